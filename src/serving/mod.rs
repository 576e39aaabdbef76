//! Serving decisions: features computed online from raw rows, the predictor with its
//! guardrails, Prometheus metrics and the HTTP server.

pub mod capacity;
pub mod drift;
pub mod exposition;
pub mod features;
pub mod listener;
pub mod predictor;
pub mod server;
pub mod services;
pub mod tls;
