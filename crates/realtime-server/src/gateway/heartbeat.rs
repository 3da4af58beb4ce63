//! The Phoenix heartbeat: `heartbeat` on topic `phoenix` is answered `ok` at once, no join needed.

use realtime_protocol::{reply, Message, Outbound};

use crate::gateway::effect::Effect;
use crate::gateway::session::Session;

impl Session {
    pub(crate) fn on_heartbeat(&self, m: Message, fx: &mut Vec<Effect>) {
        fx.push(Effect::Send(Outbound::Message(reply::heartbeat(m.msg_ref))));
    }
}
