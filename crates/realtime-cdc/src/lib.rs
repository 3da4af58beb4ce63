//! realtime-cdc
