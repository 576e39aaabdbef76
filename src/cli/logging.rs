//! Logs go to stderr through `tracing`: short lines for people, JSON lines for collectors.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, format: super::LogFormat) {
    let default = match verbose {
        0 => "info,datafusion=warn,object_store=warn",
        1 => "debug,datafusion=info,object_store=info,hyper=info,h2=info,reqwest=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == super::LogFormat::Json {
        builder.json().flatten_event(true).init();
    } else {
        builder.without_time().with_target(false).with_ansi(std::io::stderr().is_terminal()).init();
    }
}
