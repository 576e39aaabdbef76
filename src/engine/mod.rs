//! Where the SQL stages run: in this process (DataFusion), or on a Ballista cluster.
//!
//! A cluster is this binary too (`pipeline scheduler`, `pipeline executor`), so the window
//! functions the SQL calls (`rolling_*`) and the batch window operator that computes them are
//! the same code on every machine; `codec::PlanCodec` carries that operator in the plans the
//! scheduler sends to executors. Results stream back to the stage, which writes its cache entry
//! as it does locally, so a cluster never writes into the cache.

#[cfg(feature = "ballista")]
pub mod ballista;
#[cfg(feature = "ballista")]
pub mod codec;
#[cfg(feature = "ballista")]
pub mod objects;

use std::fmt;

/// `engine:` of a pipeline file, `--engine` or PIPELINE_ENGINE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Engine {
    /// DataFusion in this process.
    #[default]
    Local,
    /// A Ballista scheduler at `http://HOST:PORT`.
    Ballista { host: String, port: u16 },
    /// A scheduler and executor started inside this process: Ballista's planning, wire format
    /// and execution, with no cluster to run (for trying a query before a cluster sees it).
    Standalone,
}

/// Why a build without the `ballista` feature runs SQL stages only in this process.
pub const NO_BALLISTA: &str = "this `pipeline` was built without Ballista (the `ballista` feature); build it with the default features, or use `engine: local`";

/// Ballista's scheduler port, when the URL gives none.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

impl Engine {
    /// `local`, `ballista://HOST[:PORT]` or `ballista:standalone`.
    pub fn parse(text: &str) -> Result<Engine, String> {
        let text = text.trim();
        match text {
            "" | "local" => return Ok(Engine::Local),
            "ballista:standalone" | "ballista://standalone" => return Ok(Engine::Standalone),
            _ => {}
        }
        let usage = "an engine is `local`, `ballista://HOST:PORT` (a Ballista scheduler) or `ballista:standalone` (one in this process)";
        let Some(address) = text.strip_prefix("ballista://") else {
            return Err(format!("`{text}` is not an engine: {usage}"));
        };
        let address = address.trim_end_matches('/');
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => {
                let port = port.parse::<u16>().map_err(|_| format!("`{text}`: `{port}` is not a port number"))?;
                (host, port)
            }
            None => (address, DEFAULT_SCHEDULER_PORT),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("`{text}` names no scheduler host: {usage}"));
        }
        Ok(Engine::Ballista { host: host.to_string(), port })
    }

    /// The engine, if this build can run it: without the `ballista` feature only `local`.
    pub fn parse_supported(text: &str) -> Result<Engine, String> {
        let engine = Engine::parse(text)?;
        if !engine.is_local() && !cfg!(feature = "ballista") {
            return Err(format!("`{text}`: {NO_BALLISTA}"));
        }
        Ok(engine)
    }

    pub fn is_local(&self) -> bool {
        *self == Engine::Local
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::Local => write!(f, "local"),
            Engine::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
            Engine::Standalone => write!(f, "ballista:standalone"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_named_by_url() {
        assert_eq!(Engine::parse("local"), Ok(Engine::Local));
        assert_eq!(Engine::parse(""), Ok(Engine::Local));
        assert_eq!(Engine::parse("ballista://10.0.0.5:50050"), Ok(Engine::Ballista { host: "10.0.0.5".into(), port: 50050 }));
        assert_eq!(Engine::parse("ballista://scheduler"), Ok(Engine::Ballista { host: "scheduler".into(), port: 50050 }));
        assert_eq!(Engine::parse("ballista:standalone"), Ok(Engine::Standalone));
        assert_eq!(Engine::parse("ballista://scheduler:50050").unwrap().to_string(), "ballista://scheduler:50050");
        assert!(Engine::parse("spark://x").unwrap_err().contains("`ballista://HOST:PORT`"));
        assert!(Engine::parse("ballista://h:port").unwrap_err().contains("`port` is not a port number"));
        assert!(Engine::parse("ballista://").unwrap_err().contains("names no scheduler host"));
    }
}
