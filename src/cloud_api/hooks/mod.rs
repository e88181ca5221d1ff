//! Inbound hooks: what OnCall and the providers post back to the relay (OnCall's webhooks,
//! people's replies). Each checks its own secret; none uses the cloud API token.

pub mod act;
pub mod oncall;
pub mod slack;
pub mod sms;
