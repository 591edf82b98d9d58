//! The index itself: systems, their groups and members, and this node's clients. Pure data
//! with the few operations that keep its parts consistent; no channels, no backend.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::Members;
use crate::ids::ConnId;
use crate::msg::Frame;
use crate::protocol::api::ApiError;

/// A registered system's place in [`Index::systems`] (systems are never unregistered, so a
/// `SysId` stays valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SysId(u32);

impl SysId {
    /// Its place in [`Index::systems`].
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The index as shards name it ([`crate::msg::SystemRef::Index`]).
    pub fn raw(self) -> u32 {
        self.0
    }
}

/// A client of this node.
pub struct Client {
    pub system: SysId,
    pub user_id: Box<str>,
    pub extend: Box<str>,
    /// The groups it is in, as keys of its system's `groups`.
    pub groups: Vec<Arc<str>>,
}

/// A user's connections on this node: most users have one, which needs no allocation of its
/// own (measured: 64 bytes less per single-connection user than a `Vec`).
#[derive(Debug)]
pub enum Conns {
    One(ConnId),
    Many(Vec<ConnId>),
}

impl Conns {
    pub fn as_slice(&self) -> &[ConnId] {
        match self {
            Conns::One(c) => std::slice::from_ref(c),
            Conns::Many(v) => v,
        }
    }

    fn push(&mut self, c: ConnId) {
        match self {
            Conns::One(first) => *self = Conns::Many(vec![*first, c]),
            Conns::Many(v) => v.push(c),
        }
    }

    /// Removes `c`; true if none is left.
    fn remove(&mut self, c: ConnId) -> bool {
        match self {
            Conns::One(only) => *only == c,
            Conns::Many(v) => {
                v.retain(|x| *x != c);
                if let [last] = v[..] {
                    *self = Conns::One(last);
                }
                false
            }
        }
    }
}

/// A registered system: its members (every client of this node in it) and its groups.
pub struct System {
    pub name: Arc<str>,
    pub members: Members,
    pub groups: HashMap<Arc<str>, Members>,
    /// The group names in byte order, for paging `get_all_groups`.
    pub names: BTreeSet<Arc<str>>,
    /// Single node, `history_size` > 0: each group's last messages (the shared frames) with
    /// when they were sent; kept `history_ttl` past the last one, members or not.
    pub histories: HashMap<Arc<str>, VecDeque<(Instant, Frame)>>,
    /// This node's connections of each user (a handful each: tabs, devices), in the order they
    /// got their user.
    pub users: HashMap<Arc<str>, Conns>,
}

impl System {
    /// The group's key and members, created empty if it has none yet (`true`: created).
    pub fn group_entry(&mut self, name: &str, shards: usize) -> (Arc<str>, &mut Members, bool) {
        if let Some((k, _)) = self.groups.get_key_value(name) {
            let k = k.clone();
            let m = self.groups.get_mut(name).expect("key seen above");
            return (k, m, false);
        }
        let k: Arc<str> = name.into();
        self.names.insert(k.clone());
        let m = self.groups.entry(k.clone()).or_insert_with(|| Members::new(shards));
        (k, m, true)
    }

    /// Forgets the group if it has no member left; `true` if it was removed.
    pub fn drop_if_empty(&mut self, name: &str) -> bool {
        if self.groups.get(name).is_some_and(Members::is_empty) {
            self.groups.remove(name);
            self.names.remove(name);
            return true;
        }
        false
    }
}

/// Systems and this node's clients.
#[derive(Default)]
pub struct Index {
    by_name: HashMap<Arc<str>, SysId>,
    pub systems: Vec<System>,
    /// Keyed by server-assigned ids: a fast hash without flooding resistance is safe.
    pub clients: FxHashMap<ConnId, Client>,
    /// The user of each client that has one (its connect token's `sub`, else the `userId` of
    /// its first bind naming one); clients without one cost nothing here.
    pub users: FxHashMap<ConnId, Arc<str>>,
}

impl Index {
    /// The systems with the most clients and their largest groups, for the admin page:
    /// O(systems + groups), run only when someone asks. Largest first; ties by name.
    pub fn admin_view(&self) -> crate::msg::AdminView {
        use crate::msg::{AdminView, SystemView};
        use std::cmp::Reverse;
        // The `n` largest of (size, name, payload), in order.
        fn top<T>(mut v: Vec<(usize, Arc<str>, T)>, n: usize) -> Vec<(usize, Arc<str>, T)> {
            let order =
                |a: &(usize, Arc<str>, T), b: &(usize, Arc<str>, T)| (Reverse(a.0), &a.1).cmp(&(Reverse(b.0), &b.1));
            let n = n.min(v.len());
            if n > 0 {
                v.select_nth_unstable_by(n - 1, order);
                v.truncate(n);
                v.sort_unstable_by(order);
            }
            v
        }
        let by_clients = self.systems.iter().map(|s| (s.members.len(), s.name.clone(), s)).collect();
        let systems = top(by_clients, AdminView::SYSTEMS)
            .into_iter()
            .map(|(clients, name, s)| {
                let sizes = s.groups.iter().map(|(g, m)| (m.len(), g.clone(), ())).collect();
                let largest = top(sizes, AdminView::GROUPS).into_iter().map(|(n, g, ())| (g, n)).collect();
                SystemView { name, clients, users: s.users.len(), groups: s.groups.len(), largest }
            })
            .collect();
        AdminView { systems_total: self.systems.len(), systems }
    }

    /// The system named `name`, if registered (here; in cluster mode, seen in Redis).
    pub fn find(&self, name: &str) -> Option<SysId> {
        self.by_name.get(name).copied()
    }

    /// The system at index `i` (as a shard named it), if there is one.
    pub fn at(&self, i: u32) -> Option<SysId> {
        ((i as usize) < self.systems.len()).then_some(SysId(i))
    }

    /// Adds a system; `None` if it exists.
    pub fn add_system(&mut self, name: &str, shards: usize) -> Option<SysId> {
        if self.by_name.contains_key(name) {
            return None;
        }
        let id = SysId(self.systems.len() as u32);
        let name: Arc<str> = name.into();
        self.systems.push(System {
            name: name.clone(),
            members: Members::new(shards),
            groups: HashMap::new(),
            names: BTreeSet::new(),
            histories: HashMap::new(),
            users: HashMap::new(),
        });
        self.by_name.insert(name, id);
        Some(id)
    }

    pub fn system(&mut self, id: SysId) -> &mut System {
        &mut self.systems[id.0 as usize]
    }

    pub fn name(&self, id: SysId) -> &Arc<str> {
        &self.systems[id.0 as usize].name
    }

    /// The client `c` if it belongs to `system` (another system's client is unknown: tenant
    /// isolation).
    pub fn client_in(&self, system: SysId, c: ConnId) -> Result<&Client, ApiError> {
        match self.clients.get(&c) {
            Some(cl) if cl.system == system => Ok(cl),
            _ => Err(ApiError::unknown_client()),
        }
    }

    /// Gives `conn` (a client of `sys` with no user yet) its user; `true` if it is the user's
    /// first connection here.
    pub fn set_user(&mut self, sys: SysId, conn: ConnId, user: &str) -> bool {
        debug_assert!(!user.is_empty() && !self.users.contains_key(&conn), "a connection's user is set once");
        let system = &mut self.systems[sys.index()];
        let key = match system.users.get_key_value(user) {
            Some((k, _)) => k.clone(),
            None => Arc::from(user),
        };
        self.users.insert(conn, key.clone());
        match system.users.entry(key) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Conns::One(conn));
                true
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.get_mut().push(conn);
                false
            }
        }
    }

    /// Takes `conn`'s user away (it left): the user, and whether it was the user's last
    /// connection here.
    pub fn drop_user(&mut self, sys: SysId, conn: ConnId) -> Option<(Arc<str>, bool)> {
        let user = self.users.remove(&conn)?;
        let users = &mut self.systems[sys.index()].users;
        let last = users.get_mut(&*user)?.remove(conn);
        if last {
            users.remove(&*user);
        }
        Some((user, last))
    }

    /// This node's connections of `user` in `sys`.
    pub fn user_conns(&self, sys: SysId, user: &str) -> &[ConnId] {
        self.systems[sys.index()].users.get(user).map_or(&[], Conns::as_slice)
    }

    /// Both the client (checked to be in `system`) and its system, for changes to both.
    pub fn client_and_system(&mut self, system: SysId, c: ConnId) -> Result<(&mut Client, &mut System), ApiError> {
        match self.clients.get_mut(&c) {
            Some(cl) if cl.system == system => Ok((cl, &mut self.systems[system.0 as usize])),
            _ => Err(ApiError::unknown_client()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_are_found_by_name_and_groups_kept_in_order() {
        let mut ix = Index::default();
        let a = ix.add_system("a", 2).unwrap();
        assert!(ix.add_system("a", 2).is_none());
        assert_eq!(ix.find("a"), Some(a));
        assert_eq!(ix.find("b"), None);
        let sys = ix.system(a);
        for g in ["b", "a", "c"] {
            let (_, m, created) = sys.group_entry(g, 2);
            assert!(created);
            m.insert(ConnId { shard: 0, slot: 1, gen: 1 });
        }
        assert!(!sys.group_entry("a", 2).2);
        let names: Vec<&str> = sys.names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(!sys.drop_if_empty("a"));
        sys.groups.get_mut("a").unwrap().remove(ConnId { shard: 0, slot: 1, gen: 1 });
        assert!(sys.drop_if_empty("a"));
        assert_eq!(sys.names.len(), 2);
    }

    #[test]
    fn a_users_connections_are_counted_until_the_last_goes() {
        let mut ix = Index::default();
        let a = ix.add_system("a", 2).unwrap();
        let b = ix.add_system("b", 2).unwrap();
        let c = |slot| ConnId { shard: 0, slot, gen: 1 };
        assert!(ix.set_user(a, c(1), "alice"));
        assert!(!ix.set_user(a, c(2), "alice"), "a second tab");
        assert!(ix.set_user(b, c(3), "alice"), "another system's alice is another person");
        assert_eq!(ix.user_conns(a, "alice"), [c(1), c(2)]);
        assert!(!ix.set_user(a, c(4), "alice"));
        assert_eq!(ix.drop_user(a, c(2)).map(|(_, last)| last), Some(false), "from the middle");
        assert_eq!(ix.user_conns(a, "alice"), [c(1), c(4)]);
        assert_eq!(ix.drop_user(a, c(4)).map(|(_, last)| last), Some(false));
        assert_eq!(ix.user_conns(a, "alice"), [c(1)]);
        assert_eq!(ix.drop_user(a, c(1)).map(|(u, last)| (u.to_string(), last)), Some(("alice".into(), true)));
        assert_eq!(ix.drop_user(a, c(1)), None, "once");
        assert!(ix.user_conns(a, "alice").is_empty());
        assert!(ix.systems[a.index()].users.is_empty(), "nothing kept for a user gone");
        assert_eq!(ix.user_conns(b, "alice"), [c(3)]);
    }
}
