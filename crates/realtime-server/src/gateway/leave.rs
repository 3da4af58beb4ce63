//! `phx_leave`: leaves a joined channel (reply, then `phx_close`), answers `ok` for a topic that
//! is not joined, and ignores a leave whose join ref is not the channel's (it raced a close).

use realtime_protocol::reply::{self, Status};
use realtime_protocol::{Message, Outbound};
use serde_json::json;

use crate::gateway::core::{Core, Cx};

impl Core {
    pub(crate) fn on_leave(&mut self, m: Message, cx: &mut Cx<'_>) {
        // A join still waiting for the tenant database is abandoned.
        self.pending_joins.remove(&m.topic);
        let Some(ch) = self.channels.get(&m.topic) else {
            cx.send(Outbound::Message(reply::ok_empty(
                m.join_ref, m.msg_ref, &m.topic,
            )));
            return;
        };
        if ch.join_ref.is_some() && m.join_ref != ch.join_ref {
            return;
        }
        cx.send(ch.reply(m.msg_ref, Status::Ok, json!({})));
        cx.send(ch.close_frame());
        self.remove_channel(&m.topic, cx.fx);
    }
}
