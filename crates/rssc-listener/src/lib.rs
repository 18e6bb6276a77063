//! rssc's listener. So far: the pure decisions it is built on — how many runners to ask for,
//! when to tell the EphemeralRunnerSet, and the patches it writes.

pub mod patches;
pub mod scaler;
