//! The Phoenix heartbeat: `heartbeat` on topic `phoenix` is answered `ok` at once, no join needed.

use realtime_protocol::{reply, Message, Outbound};

use crate::gateway::core::{Core, Cx};

impl Core {
    pub(crate) fn on_heartbeat(&self, m: Message, cx: &mut Cx<'_>) {
        cx.send(Outbound::Message(reply::heartbeat(m.msg_ref)));
    }
}
