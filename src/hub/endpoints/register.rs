//! `register` (operator token): a new system (tenant). A single node adds it to the index (and
//! with `state_dir` writes the registered systems there, `crate::state`); cluster mode adds it
//! to Redis's set of systems (`SADD`) and the broker answers, after which every node learns it
//! on first use. Systems registered without a call — the `systems` setting, and what
//! `state_dir` kept — are added at start (`Hub::register_at_start`).

use super::{Access, Endpoint};
use crate::cluster::BrokerCmd;
use crate::hub::{Answer, Hub};
use crate::metrics;
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{ApiError, Done};
use crate::state::{self, Found, State};

pub(super) static ROW: Endpoint = Endpoint {
    name: "register",
    access: Access::Operator,
    early_answer: false,
    parse: |_| Ok(Op::Register),
    openapi: OPENAPI,
};

impl Hub {
    /// `register` of a system this node has not seen (one it has is refused 409 before this).
    pub(super) fn register(&mut self, name: &str, to: ReplyTo) -> Answer {
        let Hub { local: l, backend, .. } = self;
        match backend.cluster() {
            Some(c) => c.ask(l, to, |to| BrokerCmd::Register { system: name.into(), to }),
            None => {
                let shards = l.shards();
                if l.index.add_system(name, shards).is_none() {
                    return ApiError::already_registered(name).into();
                }
                self.save_state();
                Ok(Done::Empty).into()
            }
        }
    }

    /// Registers the systems that need no call: `systems`, and on a single node those
    /// `state_dir` kept (an unusable state is logged and set aside: a clean start).
    pub(in crate::hub) fn register_at_start(&mut self) {
        let mut names = self.local.cfg.start_systems.clone();
        let dir = self.local.cfg.state_dir.clone().filter(|_| self.backend.cluster().is_none());
        if let Some(dir) = &dir {
            match state::read(dir) {
                Found::Nothing => tracing::info!(dir = %dir.display(), "state_dir holds no state yet: a clean start"),
                Found::State(s) => {
                    tracing::info!(dir = %dir.display(), systems = s.systems.len(), "registered systems restored from state_dir");
                    names.extend(s.systems.into_iter().map(Into::into));
                }
                Found::Unusable(why) => tracing::warn!("state_dir: {why}: starting clean"),
            }
        }
        let shards = self.local.shards();
        for n in &names {
            self.local.index.add_system(n, shards);
        }
        if dir.is_some() {
            self.save_state();
        }
    }

    /// A single node with `state_dir`: writes the registered systems there (after each
    /// register, at start and at shutdown). A failed write is logged and counted; the state
    /// written last stays.
    pub(in crate::hub) fn save_state(&mut self) {
        let Some(dir) = &self.local.cfg.state_dir else { return };
        debug_assert!(self.backend.cluster().is_none(), "state_dir is refused in cluster mode (config)");
        let systems = self.local.index.systems.iter().map(|s| s.name.to_string()).collect();
        match state::write(dir, &State { systems }) {
            Ok(()) => metrics::add(&self.local.stats.state_writes_total, 1),
            Err(e) => {
                metrics::add(&self.local.stats.state_write_errors_total, 1);
                tracing::error!(dir = %dir.display(), "cannot write the state to state_dir: {e}; the state written last stays");
            }
        }
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Register a system (tenant); operator token only",
 "requestBody": {
  "required": true,
  "content": {
   "application/json": {
    "schema": {
     "type": "object",
     "properties": {
      "systemId": {
       "$ref": "#/components/schemas/SystemIdValue"
      }
     },
     "required": [
      "systemId"
     ]
    }
   }
  }
 },
 "responses": {
  "200": {
   "$ref": "#/components/responses/Empty"
  },
  "409": {
   "$ref": "#/components/responses/Error"
  }
 }
}"##;
