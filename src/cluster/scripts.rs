//! Lua scripts: each presence change is one atomic step in Redis, and a notice is published
//! by the same step that decided it (so it goes out exactly once, after the change).

use redis::Script;

/// The scripts, loaded into Redis at every (re)connect and run by hash (`EVALSHA`) inside
/// pipelines.
pub struct Scripts {
    pub join: Script,
    pub leave: Script,
    pub keep: Script,
    pub user_join: Script,
    pub user_leave: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            keep: Script::new(KEEP),
            user_join: Script::new(USER_JOIN),
            user_leave: Script::new(USER_LEAVE),
        }
    }

    /// Loads every script (Redis may have restarted empty).
    pub fn load(&self, con: &mut redis::Connection) -> redis::RedisResult<()> {
        for s in self.all() {
            s.load(con)?;
        }
        Ok(())
    }

    /// Every script (a Redis Cluster connection loads them on each master it reaches).
    pub fn all(&self) -> Vec<Script> {
        [&self.join, &self.leave, &self.keep, &self.user_join, &self.user_leave].into_iter().cloned().collect()
    }
}

/// KEYS: group hash (also its channel).
/// ARGV: clientId, info, joined marker with the 1001 notice ('' = no notice), max size, joined
/// marker alone, the publish command (`PUBLISH`, or `SPUBLISH` on a Redis Cluster).
/// Publishes the marker (the client's node makes it a member at this point of the group's
/// order), with the notice if the client is new and the group not larger than max size.
/// Returns {1 if the client is new there, the group's size}.
///
/// Every step touches one group's keys only (one hash slot on a Redis Cluster): the node's hash
/// and the system's groups index are written beside the step, in the same pipeline
/// (`broker::presence`).
pub const JOIN: &str = r"
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local n = redis.call('HLEN', KEYS[1])
if new == 1 and ARGV[3] ~= '' and n <= tonumber(ARGV[4]) then
  redis.call(ARGV[6], KEYS[1], ARGV[3])
else
  redis.call(ARGV[6], KEYS[1], ARGV[5])
end
return {new, n}
";

/// KEYS: group hash, the group's history stream. ARGV: the message (JSON), history size,
/// history ttl (ms). Keeps the message while the group has members, or a history still.
pub const KEEP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 'm', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 0
";

/// KEYS: group hash (also its channel).
/// ARGV: clientId, notice payload ('' = none), max size, the skip marker published instead
/// when no notice goes out (the channel's positions stay unbroken), the publish command.
/// Returns {1 if the client was a member, the group's size after} (a size of 0: the broker
/// takes the group out of the system's index).
pub const LEAVE: &str = r"
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
local n = redis.call('HLEN', KEYS[1])
if gone == 1 and n > 0 and ARGV[2] ~= '' and n <= tonumber(ARGV[3]) then
  redis.call(ARGV[5], KEYS[1], ARGV[2])
else
  redis.call(ARGV[5], KEYS[1], ARGV[4])
end
return {gone, n}
";

/// KEYS: the user's hash. ARGV: clientId.
/// Returns {1 if the connection is new there, the user's connections after}: `{1, 1}` is the
/// user's first connection in the cluster (`user_online`, decided here, once).
pub const USER_JOIN: &str = r"
local new = redis.call('HSET', KEYS[1], ARGV[1], '1')
return {new, redis.call('HLEN', KEYS[1])}
";

/// KEYS: the user's hash. ARGV: clientId.
/// Returns {1 if the connection was there, the user's connections after}: `{1, 0}` was the
/// user's last connection in the cluster (`user_offline`, decided here, once).
pub const USER_LEAVE: &str = r"
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
return {gone, redis.call('HLEN', KEYS[1])}
";
