//! The Phoenix heartbeat: `heartbeat` on topic `phoenix` is answered `ok` at once, no join needed.

use realtime_protocol::Message;
use serde_json::json;

use crate::gateway::channel::reply;
use crate::gateway::session::Session;

impl Session {
    pub(crate) fn on_heartbeat(&self, m: Message) {
        self.send(&reply(None, m.msg_ref, "phoenix", "ok", json!({})));
    }
}
