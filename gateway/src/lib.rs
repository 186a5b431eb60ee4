//! The img3d gateway: WebSocket sessions, validation, streaming of job events.
