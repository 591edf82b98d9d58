//! What happens to a connection when something happens to it: the event side of the
//! lifecycle, as one pure function. [`react`] takes a connection's [`Phase`] and an [`Event`]
//! (its socket ended, a deadline, a hub or relay message, a close from its client, a shutdown)
//! and returns the [`Action`]s to take, in order; the shard applies them
//! ([`Shard::on_event`](super::super::Shard::on_event)), which is the only place that does the
//! IO. No socket, clock or shard is needed to know what a blip, a takeover, an overflow, an
//! edge's drop or a shutdown does: the unit tests below drive every event in every phase.
//!
//! The table (`recoverable`: the client opted in to session recovery; *hub told*: a
//! `Disconnected` with the reason, if the hub knew the client; *owner keeps* / *owner ends*:
//! the edge tells the node that owns its session that its client dropped (the session is kept
//! there) or closed (it ends there)):
//!
//! | event | phase | actions |
//! |---|---|---|
//! | socket lost (EOF, reset, error, a deadline) | `Detached`, `Relayed` (no socket) | nothing |
//! | | `Client` (told, recoverable), not shutting down | detach |
//! | | `Edge`, `Parked` | owner keeps, free |
//! | | any other | free (hub told if it knew the client and it was not closing) |
//! | EOF | `Http` owing an answer | finish the HTTP exchange |
//! | session ends (window, overflow, eviction) | `Detached` | free (hub told) |
//! | idle | `Edge` | as socket lost |
//! | | `Client` (recoverable) | detach |
//! | | any other | close 1001 "idle timeout", unsent output dropped |
//! | slow consumer | any WebSocket | (`Edge`: owner ends) close 1008, unsent output dropped |
//! | client closed / bad input | any WebSocket | (`Edge`: owner ends) close with its code |
//! | refused (hub said no) | `Client` | close 1008 (the -1001 frame is queued first) |
//! | kicked (`close_client`) | `Detached` | free (the hub removed it already) |
//! | | `Relayed` | the edge closes with the code, free |
//! | | `Client` | close with the code (the hub removed it already) |
//! | shutdown, sessions kept (`state_dir`) | `Client` (told, recoverable) | restart: close 1012, the session kept (detached) for the state, nobody told |
//! | | `Detached` | nothing (kept for the state) |
//! | shutdown | `Client`, `Echo` | close 1001 |
//! | | `Http` owing nothing / owing | free / finish the HTTP exchange |
//! | | `Detached` | free (hub told: shutdown) |
//! | | `Relayed` | the edge closes 1001, free (hub told) |
//! | | `Edge` | owner keeps, close 1001 |
//! | | `Parked` | owner keeps, free |
//! | shutdown deadline | `Detached`, sessions kept | nothing (kept for the state) |
//! | | `Detached`, `Relayed` | free (hub told: shutdown) |
//! | | any other | as socket lost, while shutting down (nothing detaches) |
//! | peer node gone | `Parked` | cut the relay, a fresh session here |
//! | | `Edge` | cut the relay, close 1001 |
//! | | `Relayed` | cut the relay, detach |
//! | | any other but `Closing` | cut the relay |
//! | relay message lost | `Edge`, `Parked` | as socket lost (the client resumes through any node) |
//! | | `Relayed` | the edge closes 1012, cut the relay, detach |
//! | edge dropped / edge closed | `Relayed` | cut the relay, detach / free (hub told) |
//! | owner closed the edge | `Edge` | cut the relay, close with the owner's code |
//! | park timeout / the owner refused | `Parked` | owner keeps, a fresh session here |
//! | resume refused, its `last` gone | `Detached`, `Relayed` | (`Relayed`: the edge closes 1000) free (hub told) |
//! | | `Client` | end the session, close 1001 "session taken over" |
//!
//! An event a phase does not expect (a relay message for an HTTP connection, a kick of a
//! closing one) does nothing.

use std::borrow::Cow;

use super::super::State;
use crate::protocol::ws::close;
use crate::recovery::Refusal;
use crate::webhooks::Gone;

/// A close reason: fixed text, or one that came with a message (a relay's `EdgeClose`).
pub(in crate::shard) type Reason = Cow<'static, str>;

/// What a connection is, as far as its reactions depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::shard) struct Phase {
    pub state: State,
    /// It opted in to session recovery (it has a session).
    pub recoverable: bool,
    /// HTTP: a response is still owed (an API call at the hub) or still unsent.
    pub owes: bool,
    /// The node is shutting down: nothing is kept for a resume any more (unless
    /// `keeps_sessions`).
    pub shutting_down: bool,
    /// A shutdown keeps the recoverable sessions: for the next start (a single node with
    /// `state_dir`, `crate::restore`) or for a live node (cluster mode, `hub::handoff`).
    pub keeps_sessions: bool,
}

/// Something that happened to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::shard) enum Event {
    /// Its socket ended without a close handshake (reset, a read or write error), or a
    /// deadline drops it (a closing connection's grace, an idle HTTP connection, a stalled TLS
    /// handshake).
    SocketLost,
    /// Its peer closed the read side (EOF).
    Eof,
    /// A detached session's window or byte bound ran out, or it was evicted: it ends (`why`).
    SessionEnds,
    /// Silent for `idle_timeout`.
    Idle,
    /// Its output stayed over the soft limit too long, or would pass the hard limit.
    SlowConsumer,
    /// Its client sent a close frame (with `code`; `reason` is ours for a bad close payload).
    ClientClosed { code: u16, reason: &'static str },
    /// Its client broke the protocol or a bound (`code`, `reason`).
    BadInput { code: u16, reason: &'static str },
    /// The hub refused the connect (the -1001 frame is queued).
    Refused,
    /// `close_client`: the hub has removed the client already.
    Kicked { code: u16, reason: &'static str },
    /// The node begins its shutdown.
    Shutdown,
    /// The shutdown's deadline came: whatever is still here goes.
    ShutdownLate,
    /// The node at the other end of its relay is gone.
    PeerNodeGone,
    /// A relay message for it was lost.
    RelayLost,
    /// (Owner side) its client, connected through another node, dropped without a close.
    EdgeDropped,
    /// (Owner side) its client, connected through another node, closed.
    EdgeClosed,
    /// (Edge side) the node that owns its session closes it (a takeover, `close_client`).
    OwnerClosed { code: u16, reason: Box<str> },
    /// A parked resume got no answer in time.
    ParkTimeout,
    /// (Edge side) the owner refused a parked resume.
    OwnerRefused(Refusal),
    /// A resume of its session was refused because the frames after its `last` are gone: its
    /// client moved on, so the session ends.
    ResumeRefused,
}

/// What the shard does for an event, in the order [`react`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::shard) enum Action {
    /// Keep the session, without its socket, for `recovery_window` (a blip). Nobody is told.
    Detach,
    /// Start a WebSocket close: (unsent output dropped if `drop_output`) a close frame queued
    /// last, input discarded; the hub told `tell` if it knew the client.
    Close { code: u16, reason: Reason, drop_output: bool, tell: Option<Gone> },
    /// Free the slot now (its socket closed); the hub told `tell` if it knew the client and
    /// the connection was not closing already.
    Free { tell: Option<Gone> },
    /// (Edge) tell the session's owner its client dropped: the owner keeps the session.
    OwnerKeeps,
    /// (Edge) tell the session's owner its client closed: the session ends there.
    OwnerEnds,
    /// (Owner) tell the edge to close with `code`, and forget it.
    EdgeCloses { code: u16, reason: &'static str },
    /// Forget the relay without a word (the other side knows, or is gone).
    CutRelay,
    /// A parked resume that cannot go on gets a fresh session here (counted as refused for
    /// `why`; `None`: no answer, or the owner is gone).
    Unpark(Option<Refusal>),
    /// HTTP: parse no further request; close once what is owed is sent.
    FinishHttp,
    /// The session is no longer recoverable (its connection goes on to close).
    EndSession,
    /// Shutdown with sessions kept: close 1012 (the client resumes after the restart), and
    /// keep the session detached for the state written at exit. Nobody is told.
    Restart,
}

/// At most this many actions for one event.
pub(in crate::shard) type Actions = [Option<Action>; 3];

fn one(a: Action) -> Actions {
    [Some(a), None, None]
}

fn two(a: Action, b: Action) -> Actions {
    [Some(a), Some(b), None]
}

const NOTHING: Actions = [None, None, None];

fn close(code: u16, reason: impl Into<Reason>, drop_output: bool, tell: Gone) -> Action {
    Action::Close { code, reason: reason.into(), drop_output, tell: Some(tell) }
}

fn free(tell: Gone) -> Action {
    Action::Free { tell: Some(tell) }
}

/// The actions for `event` on a connection in phase `p` (the module's table).
pub(in crate::shard) fn react(p: Phase, event: Event) -> Actions {
    use State::*;
    let ws = p.state.is_ws();
    let lost_anyway = event_is_lost(&event);
    match (event, p.state) {
        (_, Closing { .. }) if lost_anyway => one(Action::Free { tell: None }),
        (_, Closing { .. }) => NOTHING,
        // No socket here: nothing of a socket's can happen to it.
        (Event::SocketLost | Event::Eof, Detached | Relayed) => NOTHING,
        (Event::SocketLost, _) => lost(p, Gone::Closed),
        (Event::Eof, Http { .. }) if p.owes => one(Action::FinishHttp),
        (Event::Eof, _) => lost(p, Gone::Closed),
        (Event::SessionEnds, Detached) => one(free(Gone::RecoveryExpired)),
        (Event::Idle, Edge) => lost(p, Gone::Closed),
        (Event::Idle, Client { .. }) if p.recoverable => one(Action::Detach),
        (Event::Idle, _) if ws => one(close(close::GOING_AWAY, "idle timeout", true, Gone::IdleTimeout)),
        (Event::SlowConsumer, _) if ws => {
            let reason = "slow consumer: output buffer limit exceeded";
            edge_ends(p, close(close::POLICY, reason, true, Gone::SlowConsumer))
        }
        (Event::ClientClosed { code, reason } | Event::BadInput { code, reason }, _) if ws => {
            edge_ends(p, close(code, reason, false, Gone::Closed))
        }
        (Event::Refused, Client { .. }) => one(close(close::POLICY, "connection refused", false, Gone::Closed)),
        (Event::Kicked { .. }, Detached) => one(Action::Free { tell: None }),
        (Event::Kicked { code, reason }, Relayed) => {
            two(Action::EdgeCloses { code, reason }, Action::Free { tell: None })
        }
        (Event::Kicked { code, reason }, Client { .. }) => {
            one(Action::Close { code, reason: reason.into(), drop_output: false, tell: None })
        }
        (Event::Shutdown | Event::ShutdownLate, Detached) if p.keeps_sessions => NOTHING,
        (Event::Shutdown, Client { hub_knows: true }) if p.keeps_sessions && p.recoverable => one(Action::Restart),
        // Cluster mode: a session whose client resumed through another node is kept for the
        // hand-off too; its client comes back through another node.
        (Event::Shutdown, Relayed) if p.keeps_sessions => {
            two(Action::EdgeCloses { code: close::RESTART, reason: "server restarting: resume" }, Action::Detach)
        }
        // A client here whose session another node owns: it resumes through another node.
        (Event::Shutdown, Edge) if p.keeps_sessions => {
            two(Action::OwnerKeeps, close(close::RESTART, "server restarting: resume", false, Gone::Shutdown))
        }
        (Event::Shutdown, _) => shutdown(p),
        (Event::ShutdownLate, _) => lost(Phase { shutting_down: true, ..p }, Gone::Shutdown),
        (Event::PeerNodeGone, Parked { .. }) => two(Action::CutRelay, Action::Unpark(None)),
        (Event::PeerNodeGone, Edge) => {
            two(Action::CutRelay, close(close::GOING_AWAY, "the session's node is gone", false, Gone::Closed))
        }
        (Event::PeerNodeGone | Event::EdgeDropped, Relayed) => two(Action::CutRelay, Action::Detach),
        (Event::PeerNodeGone, _) => one(Action::CutRelay),
        (Event::RelayLost, Edge | Parked { .. }) => lost(p, Gone::Closed),
        (Event::RelayLost, Relayed) => {
            let reason = "relay lost messages: resume";
            [Some(Action::EdgeCloses { code: close::RESTART, reason }), Some(Action::Detach), None]
        }
        (Event::EdgeClosed, Relayed) => two(Action::CutRelay, free(Gone::Closed)),
        (Event::OwnerClosed { code, reason }, Edge) => {
            two(Action::CutRelay, close(code, String::from(reason), false, Gone::Closed))
        }
        (Event::ParkTimeout, Parked { .. }) => two(Action::OwnerKeeps, Action::Unpark(None)),
        (Event::OwnerRefused(why), Parked { .. }) => two(Action::OwnerKeeps, Action::Unpark(Some(why))),
        (Event::ResumeRefused, Detached) => one(free(Gone::Closed)),
        (Event::ResumeRefused, Relayed) => {
            two(Action::EdgeCloses { code: close::NORMAL, reason: "session ended" }, free(Gone::Closed))
        }
        (Event::ResumeRefused, Client { .. }) if p.recoverable => {
            two(Action::EndSession, close(close::GOING_AWAY, "session taken over", true, Gone::Closed))
        }
        _ => NOTHING,
    }
}

/// Events that drop a connection whatever its phase (a closing one included).
fn event_is_lost(e: &Event) -> bool {
    matches!(e, Event::SocketLost | Event::Eof | Event::ShutdownLate)
}

/// The connection is gone without a close handshake: a recoverable client's session is kept
/// (outside a shutdown); an edge's owner keeps its session; anything else is freed.
fn lost(p: Phase, why: Gone) -> Actions {
    match p.state {
        State::Client { hub_knows: true } if p.recoverable && !p.shutting_down => one(Action::Detach),
        State::Edge | State::Parked { .. } => two(Action::OwnerKeeps, free(why)),
        _ => one(free(why)),
    }
}

/// A deliberate close of an edge ends its session at the owner too.
fn edge_ends(p: Phase, close: Action) -> Actions {
    match p.state {
        State::Edge => two(Action::OwnerEnds, close),
        _ => one(close),
    }
}

fn shutdown(p: Phase) -> Actions {
    use State::*;
    let going = || close(close::GOING_AWAY, "server shutting down", false, Gone::Shutdown);
    match p.state {
        Client { .. } | Echo => one(going()),
        Http { .. } if p.owes => one(Action::FinishHttp),
        Http { .. } => one(Action::Free { tell: None }),
        Closing { .. } => NOTHING,
        // A shutdown ends every session of this node (its groups are told, once), and the
        // edges of sessions relayed elsewhere.
        Detached => one(free(Gone::Shutdown)),
        Relayed => {
            two(Action::EdgeCloses { code: close::GOING_AWAY, reason: "server shutting down" }, free(Gone::Shutdown))
        }
        // A client connected here whose session another node owns keeps its session there: it
        // resumes elsewhere.
        Edge => two(Action::OwnerKeeps, going()),
        Parked { .. } => two(Action::OwnerKeeps, free(Gone::Closed)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::legal;
    use super::*;
    use crate::shard::CloseKind;

    fn phase(state: State) -> Phase {
        Phase { state, recoverable: false, owes: false, shutting_down: false, keeps_sessions: false }
    }

    fn recoverable(state: State) -> Phase {
        Phase { recoverable: true, ..phase(state) }
    }

    fn acts(p: Phase, e: Event) -> Vec<Action> {
        react(p, e).into_iter().flatten().collect()
    }

    const TOLD: State = State::Client { hub_knows: true };
    const HTTP: State = State::Http { awaiting: false, keep_alive: true };

    fn states() -> Vec<State> {
        vec![
            State::Detached,
            State::Parked { until: 5 },
            State::Edge,
            State::Relayed,
            HTTP,
            State::Http { awaiting: true, keep_alive: true },
            State::Client { hub_knows: false },
            TOLD,
            State::Echo,
            State::Closing { until: 5, kind: CloseKind::WebSocket },
            State::Closing { until: 5, kind: CloseKind::Http },
        ]
    }

    fn events() -> Vec<Event> {
        vec![
            Event::SocketLost,
            Event::Eof,
            Event::SessionEnds,
            Event::Idle,
            Event::SlowConsumer,
            Event::ClientClosed { code: 1000, reason: "" },
            Event::BadInput { code: 1002, reason: "bad" },
            Event::Refused,
            Event::Kicked { code: 1000, reason: "kicked" },
            Event::Shutdown,
            Event::ShutdownLate,
            Event::PeerNodeGone,
            Event::RelayLost,
            Event::EdgeDropped,
            Event::EdgeClosed,
            Event::OwnerClosed { code: 1000, reason: "taken over".into() },
            Event::ParkTimeout,
            Event::OwnerRefused(Refusal::BadSecret),
            Event::ResumeRefused,
        ]
    }

    /// Every event in every phase (recoverable or not, owing or not, shutting down or not)
    /// asks only for what the phase can do: moves the table of moves allows, a relay action
    /// only where there is a relay, the slot freed last.
    #[test]
    fn every_reaction_keeps_to_the_moves() {
        for state in states() {
            for bits in 0..16u8 {
                let (recoverable, owes) = (bits & 1 != 0, bits & 2 != 0);
                let (shutting_down, keeps_sessions) = (bits & 4 != 0, bits & 8 != 0);
                let p = Phase { state, recoverable, owes, shutting_down, keeps_sessions };
                for e in events() {
                    let list = acts(p, e.clone());
                    let ctx = format!("{e:?} in {p:?}: {list:?}");
                    for (i, a) in list.iter().enumerate() {
                        let last = i == list.len() - 1;
                        match a {
                            Action::Detach => assert!(legal(state, State::Detached), "{ctx}"),
                            Action::Close { .. } => {
                                assert!(
                                    state.is_ws()
                                        && legal(state, State::Closing { until: 0, kind: CloseKind::WebSocket }),
                                    "{ctx}"
                                )
                            }
                            Action::Free { .. } => assert!(last, "{ctx}: the slot is freed last"),
                            Action::OwnerKeeps | Action::OwnerEnds => {
                                assert!(matches!(state, State::Edge | State::Parked { .. }), "{ctx}")
                            }
                            Action::EdgeCloses { .. } => assert_eq!(state, State::Relayed, "{ctx}"),
                            Action::CutRelay => assert!(!state.is_closing(), "{ctx}"),
                            Action::Unpark(_) => assert!(state.is_parked() && last, "{ctx}"),
                            Action::FinishHttp => assert!(matches!(state, State::Http { .. }) && p.owes, "{ctx}"),
                            Action::EndSession => assert!(p.recoverable, "{ctx}"),
                            Action::Restart => {
                                assert!(p.keeps_sessions && p.recoverable && state == TOLD && last, "{ctx}")
                            }
                        }
                    }
                    // A detached session has no socket: nothing but its end or its edge's may
                    // touch it.
                    if state == State::Detached {
                        assert!(list.iter().all(|a| matches!(a, Action::Free { .. } | Action::CutRelay)), "{ctx}");
                    }
                }
            }
        }
    }

    /// A blip: a recoverable client's connection drops (reset, EOF, silence) and its session is
    /// kept; outside recovery the client is gone and the hub hears it.
    #[test]
    fn a_blip_keeps_a_recoverable_session() {
        for e in [Event::SocketLost, Event::Eof, Event::Idle] {
            assert_eq!(acts(recoverable(TOLD), e.clone()), [Action::Detach], "{e:?}");
        }
        assert_eq!(acts(phase(TOLD), Event::SocketLost), [free(Gone::Closed)]);
        let idle = acts(phase(TOLD), Event::Idle);
        assert!(matches!(
            &idle[..],
            [Action::Close { code: 1001, drop_output: true, tell: Some(Gone::IdleTimeout), .. }]
        ));
        // A deliberate close ends the session even when it could be kept.
        let closed = acts(recoverable(TOLD), Event::ClientClosed { code: 1000, reason: "" });
        assert!(matches!(&closed[..], [Action::Close { code: 1000, tell: Some(Gone::Closed), .. }]));
        // While the node shuts down nothing is kept for a resume.
        let late = Phase { shutting_down: true, ..recoverable(TOLD) };
        assert_eq!(acts(late, Event::SocketLost), [free(Gone::Closed)]);
        assert_eq!(acts(recoverable(TOLD), Event::ShutdownLate), [free(Gone::Shutdown)]);
    }

    /// A kept session's window, byte bound or eviction ends it: the hub hears it expired.
    #[test]
    fn a_detached_session_ends_as_expired() {
        assert_eq!(acts(recoverable(State::Detached), Event::SessionEnds), [free(Gone::RecoveryExpired)]);
        // Nothing that concerns a socket touches it.
        for e in [Event::Idle, Event::SlowConsumer, Event::Eof, Event::Refused, Event::RelayLost] {
            assert!(acts(recoverable(State::Detached), e.clone()).is_empty(), "{e:?}");
        }
    }

    /// Overflow (the hard or the soft output limit): 1008 with unsent output dropped; an edge
    /// also ends its session at the owner.
    #[test]
    fn a_slow_consumer_is_closed_1008() {
        let c = acts(phase(TOLD), Event::SlowConsumer);
        assert!(matches!(
            &c[..],
            [Action::Close { code: 1008, drop_output: true, tell: Some(Gone::SlowConsumer), .. }]
        ));
        let e = acts(recoverable(State::Edge), Event::SlowConsumer);
        assert!(matches!(&e[..], [Action::OwnerEnds, Action::Close { code: 1008, .. }]));
        assert!(acts(phase(HTTP), Event::SlowConsumer).is_empty(), "HTTP output is bounded by pausing input");
    }

    /// A takeover or `close_client` of a session whose client is connected through another
    /// node: the edge is told to close; the edge closes with the owner's code without telling
    /// it back.
    #[test]
    fn a_takeover_closes_the_edge() {
        let k = acts(recoverable(State::Relayed), Event::Kicked { code: 1000, reason: "bye" });
        assert_eq!(k, [Action::EdgeCloses { code: 1000, reason: "bye" }, Action::Free { tell: None }]);
        let o = acts(recoverable(State::Edge), Event::OwnerClosed { code: 1000, reason: "session taken over".into() });
        assert!(matches!(&o[..], [Action::CutRelay, Action::Close { code: 1000, tell: Some(Gone::Closed), .. }]));
        let Action::Close { reason, .. } = &o[1] else { unreachable!() };
        assert_eq!(reason, "session taken over");
        // A kicked client connected here: the hub removed it already, it is not told again.
        let c = acts(recoverable(TOLD), Event::Kicked { code: 4000, reason: "x" });
        assert!(matches!(&c[..], [Action::Close { code: 4000, tell: None, drop_output: false, .. }]));
        assert_eq!(
            acts(recoverable(State::Detached), Event::Kicked { code: 1000, reason: "" }),
            [Action::Free { tell: None }]
        );
    }

    /// An edge whose client drops: the owner keeps the session (the client resumes through any
    /// node); an owner whose edge drops keeps it detached; whose edge closed ends it.
    #[test]
    fn an_edge_drop_keeps_the_session_at_its_owner() {
        assert_eq!(acts(recoverable(State::Edge), Event::SocketLost), [Action::OwnerKeeps, free(Gone::Closed)]);
        assert_eq!(acts(recoverable(State::Edge), Event::Idle), [Action::OwnerKeeps, free(Gone::Closed)]);
        assert_eq!(acts(recoverable(State::Edge), Event::RelayLost), [Action::OwnerKeeps, free(Gone::Closed)]);
        assert_eq!(acts(recoverable(State::Relayed), Event::EdgeDropped), [Action::CutRelay, Action::Detach]);
        assert_eq!(acts(recoverable(State::Relayed), Event::EdgeClosed), [Action::CutRelay, free(Gone::Closed)]);
        let lost = acts(recoverable(State::Relayed), Event::RelayLost);
        assert_eq!(lost, [Action::EdgeCloses { code: 1012, reason: "relay lost messages: resume" }, Action::Detach]);
        // The peer node gone: each side goes its own way.
        assert_eq!(acts(recoverable(State::Relayed), Event::PeerNodeGone), [Action::CutRelay, Action::Detach]);
        assert!(matches!(
            &acts(recoverable(State::Edge), Event::PeerNodeGone)[..],
            [Action::CutRelay, Action::Close { code: 1001, .. }]
        ));
        let parked = recoverable(State::Parked { until: 1 });
        assert_eq!(acts(parked, Event::PeerNodeGone), [Action::CutRelay, Action::Unpark(None)]);
        assert_eq!(acts(parked, Event::ParkTimeout), [Action::OwnerKeeps, Action::Unpark(None)]);
        let refused = acts(parked, Event::OwnerRefused(Refusal::BadSecret));
        assert_eq!(refused, [Action::OwnerKeeps, Action::Unpark(Some(Refusal::BadSecret))]);
    }

    /// A shutdown: clients close 1001, sessions end (their groups told once), HTTP answers what
    /// it owes, an edge's session stays with its owner.
    #[test]
    fn a_shutdown_ends_what_is_here() {
        let going = |a: &[Action]| matches!(a, [Action::Close { code: 1001, tell: Some(Gone::Shutdown), .. }]);
        assert!(going(&acts(recoverable(TOLD), Event::Shutdown)));
        assert!(going(&acts(phase(State::Echo), Event::Shutdown)));
        assert_eq!(acts(phase(HTTP), Event::Shutdown), [Action::Free { tell: None }]);
        assert_eq!(acts(Phase { owes: true, ..phase(HTTP) }, Event::Shutdown), [Action::FinishHttp]);
        assert_eq!(acts(recoverable(State::Detached), Event::Shutdown), [free(Gone::Shutdown)]);
        let relayed = acts(recoverable(State::Relayed), Event::Shutdown);
        assert_eq!(relayed, [Action::EdgeCloses { code: 1001, reason: "server shutting down" }, free(Gone::Shutdown)]);
        let edge = acts(recoverable(State::Edge), Event::Shutdown);
        assert!(matches!(&edge[..], [Action::OwnerKeeps, Action::Close { code: 1001, .. }]));
        let closing = phase(State::Closing { until: 0, kind: CloseKind::WebSocket });
        assert!(acts(closing, Event::Shutdown).is_empty(), "a closing connection goes on closing");
        assert_eq!(acts(closing, Event::ShutdownLate), [Action::Free { tell: None }], "…until the deadline");
    }

    /// A shutdown that keeps sessions (`state_dir`): a recoverable client is told to come back
    /// (1012) and its session kept without a word to anyone, a detached session stays kept even
    /// past the deadline; everything else goes as in any shutdown.
    #[test]
    fn a_shutdown_that_keeps_sessions_keeps_the_recoverable_ones() {
        let keeps = |p: Phase| Phase { keeps_sessions: true, ..p };
        assert_eq!(acts(keeps(recoverable(TOLD)), Event::Shutdown), [Action::Restart]);
        assert!(acts(keeps(recoverable(State::Detached)), Event::Shutdown).is_empty());
        let late = Phase { shutting_down: true, ..keeps(recoverable(State::Detached)) };
        assert!(acts(late, Event::ShutdownLate).is_empty(), "kept for the state, not ended");
        assert!(matches!(&acts(keeps(phase(TOLD)), Event::Shutdown)[..], [Action::Close { code: 1001, .. }]));
        let unknown = keeps(recoverable(State::Client { hub_knows: false }));
        assert!(matches!(&acts(unknown, Event::Shutdown)[..], [Action::Close { code: 1001, .. }]));
        assert_eq!(acts(keeps(phase(HTTP)), Event::Shutdown), [Action::Free { tell: None }]);
    }

    /// A half-closed HTTP client still gets what it asked for; a resume whose `last` is gone
    /// ends the session wherever its client is.
    #[test]
    fn eof_and_refused_resumes() {
        assert_eq!(acts(Phase { owes: true, ..phase(HTTP) }, Event::Eof), [Action::FinishHttp]);
        assert_eq!(acts(phase(HTTP), Event::Eof), [free(Gone::Closed)]);
        assert_eq!(acts(recoverable(State::Detached), Event::ResumeRefused), [free(Gone::Closed)]);
        let relayed = acts(recoverable(State::Relayed), Event::ResumeRefused);
        assert_eq!(relayed, [Action::EdgeCloses { code: 1000, reason: "session ended" }, free(Gone::Closed)]);
        let here = acts(recoverable(TOLD), Event::ResumeRefused);
        assert!(matches!(&here[..], [Action::EndSession, Action::Close { code: 1001, drop_output: true, .. }]));
    }
}
