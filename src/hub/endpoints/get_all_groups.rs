//! `get_all_groups`: the system's groups with their members. Upstream's call (no `limit`, no
//! `cursor`) answers the whole map while it fits in one answer; with either, one page of at
//! most `groups_page_size` groups, by name, and the cursor of the next. Single node: from the
//! index; cluster: the system's sorted set of groups in Redis, a page at a time, then each
//! group's presence hash (never one long call).

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use redis::Value;

use super::{Access, Endpoint, Request};
use crate::cluster::keys::Keys;
use crate::cluster::read::{self, More, Read, Then};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub, Local};
use crate::ids;
use crate::ids::ConnId;
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{self, ApiError, Done, Page};

pub(super) static ROW: Endpoint =
    Endpoint { name: "get_all_groups", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    let (cursor, limit) = (r.body.cursor.as_deref(), r.body.limit);
    if cursor.is_none() && limit.is_none() {
        return Ok(Op::AllGroups { page: None });
    }
    let after = cursor.unwrap_or_default();
    r.limits.name(after, "cursor")?;
    let limit = r.limit(r.limits.page)?;
    Ok(Op::AllGroups { page: Some(Page { after: after.into(), limit }) })
}

impl Hub {
    pub(super) fn all_groups(&mut self, sys: SysId, page: Option<Page>, to: ReplyTo) -> Answer {
        let Hub { local: l, backend, .. } = self;
        let paged = page.is_some();
        let page = page.unwrap_or(Page { after: "".into(), limit: l.cfg.groups_page_size });
        match backend.cluster() {
            None => here(l, sys, &page, paged),
            Some(c) => c.read(l, sys, to, |system| Box::new(AllGroupsRead { system, page, paged })),
        }
    }
}

/// A single node's answer, from the index (group names kept sorted).
fn here(l: &mut Local, sys: SysId, page: &Page, paged: bool) -> Answer {
    let node = l.cfg.node_id.0;
    let system = l.index.system(sys);
    let from = match &*page.after {
        "" => Bound::Unbounded,
        after => Bound::Excluded(after),
    };
    let names: Vec<&Arc<str>> = system.names.range::<str, _>((from, Bound::Unbounded)).take(page.limit + 1).collect();
    let members = |g: &str| match system.groups.get(g) {
        Some(m) => m.iter().map(|c| ids::client_id(node, c)).collect(),
        None => Vec::new(),
    };
    api::groups_page(&names, page.limit, paged, members).map(Done::Body).into()
}

/// Cluster mode's answer: one page of the system's group names (one more than the page holds
/// tells whether more follow), then each group's members (`HKEYS`, one pipeline).
#[derive(Debug)]
struct AllGroupsRead {
    system: Box<str>,
    page: Page,
    paged: bool,
}

impl Read for AllGroupsRead {
    fn pipe(&self, k: &Keys, p: &mut redis::Pipeline) {
        let from = match &*self.page.after {
            "" => "-".to_string(),
            after => format!("({after}"),
        };
        let limit = self.page.limit + 1;
        p.cmd("ZRANGEBYLEX").arg(k.groups(&self.system)).arg(from).arg("+").arg("LIMIT").arg(0).arg(limit);
    }

    fn answer(self: Box<Self>, k: &Keys, mut results: Vec<Value>, _: ConnId, more: &mut More<'_>) -> Option<Then> {
        let mut names = read::strings(results.pop()?)?;
        let mut members: HashMap<String, Vec<String>>;
        let mut rounds = 0;
        loop {
            members = self.members(k, &names, more)?;
            // A group whose last member just left may still be listed (its removal from the
            // index follows the leave by a trip, or waits for a read like this one after a
            // node's exit): it is taken out of the index and the page read again.
            let empty: Vec<(&str, &str)> =
                members.iter().filter(|(_, m)| m.is_empty()).map(|(g, _)| (&*self.system, g.as_str())).collect();
            rounds += 1;
            if empty.is_empty() || rounds == 3 {
                break;
            }
            read::unindex(k, &empty, more).ok()?;
            let mut again = redis::pipe();
            self.pipe(k, &mut again);
            names = read::strings(more(again).ok()?.pop()?)?;
        }
        let page = api::groups_page(&names, self.page.limit, self.paged, |g| members.remove(g).unwrap_or_default());
        Some(match page {
            Ok(body) => Then::Answer(200, body),
            Err(e) => Then::Answer(e.status, e.body()),
        })
    }
}

impl AllGroupsRead {
    /// The members of the page's groups (`HKEYS`, one pipeline).
    fn members(&self, k: &Keys, names: &[String], more: &mut More<'_>) -> Option<HashMap<String, Vec<String>>> {
        let listed = &names[..names.len().min(self.page.limit)];
        let mut members = HashMap::new();
        if !listed.is_empty() {
            let mut p = redis::pipe();
            for g in listed {
                p.cmd("HKEYS").arg(k.group(&self.system, g));
            }
            let lists = more(p).ok()?;
            for (g, list) in listed.iter().zip(lists) {
                members.insert(g.clone(), read::strings(list)?);
            }
        }
        Some(members)
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "The system's groups and their clients, whole (while it fits one answer) or a page",
 "requestBody": {
  "required": false,
  "content": {
   "application/json": {
    "schema": {
     "type": "object",
     "properties": {
      "limit": {
       "type": [
        "integer",
        "null"
       ],
       "minimum": 1,
       "description": "(null: as if left out)"
      },
      "cursor": {
       "type": [
        "string",
        "null"
       ],
       "maxLength": 256,
       "description": "(null: as if left out)"
      }
     }
    }
   }
  }
 },
 "responses": {
  "200": {
   "description": "Success",
   "content": {
    "application/json": {
     "schema": {
      "allOf": [
       {
        "$ref": "#/components/schemas/Ok"
       },
       {
        "type": "object",
        "properties": {
         "data": {
          "oneOf": [
           {
            "$ref": "#/components/schemas/GroupMap"
           },
           {
            "$ref": "#/components/schemas/GroupPage"
           }
          ]
         }
        }
       }
      ]
     }
    }
   }
  }
 },
 "description": "Without limit and cursor: the whole map {group: [clientId]} (upstream's answer), or 400 when the system has more than groups_page_size groups or 100,000 clientIds. With either: one page {groups, cursor}; pass cursor back, \"\" means the last page."
}"##;
