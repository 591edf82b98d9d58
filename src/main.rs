//! The `roomcast` binary: `roomcast [serve] [OPTIONS]` and `roomcast token`.

use std::process::ExitCode;

use clap::Parser;
use roomcast::config::{Cli, Command, ServeArgs};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(t)) => {
            let secret = t.jwt_secret.as_bytes();
            let minted = match (t.connect, t.system.as_deref()) {
                // A token that is expired when printed is no token.
                _ if t.ttl.is_zero() => Err("--ttl must be longer than 0s".into()),
                (true, Some(s)) => {
                    roomcast::auth::mint_connect_hs256(secret, s, t.user.as_deref(), &t.group, t.ttl.as_secs())
                }
                (true, None) => Err("--connect needs --system: a connect token is for one system".into()),
                (false, _) if t.user.is_some() || !t.group.is_empty() => {
                    Err("--user and --group are for connect tokens: add --connect".into())
                }
                (false, system) => roomcast::auth::mint_hs256(secret, system, t.ttl.as_secs()),
            };
            match minted {
                Ok(tok) => {
                    println!("{tok}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("roomcast: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Serve(args)) => serve(*args),
        None => serve(cli.serve),
    }
}

/// Log lines on stderr: `RUST_LOG`'s filter (default `info`); JSON objects one per line with
/// `log_format = "json"`, else text — coloured only when stderr is a terminal and `NO_COLOR`
/// is unset or empty (files, journald and container logs get no escape codes).
fn init_logs(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        logs.json().init();
    } else {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        logs.with_ansi(std::io::stderr().is_terminal() && !no_color).init();
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // The configuration is resolved before logging starts (it picks the format); what it
    // refuses is printed plainly.
    let cfg = match args.resolve().and_then(|c| roomcast::cluster::check_url(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("roomcast: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(&cfg.log_format);
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("roomcast: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shards = cfg.shards;
    let open = matches!(cfg.jwt, roomcast::config::JwtKey::None);
    let server = match roomcast::server::Server::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("roomcast: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests read this line to learn the port (and the next for the admin one):
    // one write, errors ignored (a reader may have gone).
    let mut lines = format!("roomcast listening on {}\n", server.local_addr());
    if let Some(a) = server.admin_addr() {
        lines += &format!("roomcast admin on {a}\n");
    }
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, lines.as_bytes()).and_then(|_| std::io::Write::flush(&mut out));
    drop(out);
    tracing::info!(addr = %server.local_addr(), shards, open_api = open, "roomcast started");
    for sig in signals.forever() {
        if sig == SIGHUP {
            // Certificate renewal: new handshakes get the new pair, nobody is dropped.
            match server.reload_tls() {
                Ok(true) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Ok(false) => tracing::info!("SIGHUP: nothing to reload (no TLS)"),
                Err(e) => tracing::error!("SIGHUP: TLS certificate NOT reloaded, the old one stays: {e}"),
            }
            continue;
        }
        tracing::info!(
            signal = sig,
            "shutting down: closing clients with 1001 (1012 to recovering ones, whose sessions state_dir keeps or a live node adopts)"
        );
        break;
    }
    server.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
