//! The `cascade` binary: `serve` runs a media server, `token` mints an access token,
//! `dns` runs the Smart DNS service and `signal` the signalling service.

use clap::{Parser, Subcommand};

use cascade::config::{Secret, ServeArgs};
use cascade::logging::LogFormat;
use cascade::unix_now;
use cascade_core::token::{Claims, Grant, TokenSecret, mint};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "cascade", version, about = "Decentralized WebRTC media server")]
struct Cli {
    /// Log lines as text (coloured only on a terminal) or as JSON objects.
    #[arg(
        long,
        global = true,
        env = "CASCADE_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a media server (zero configuration: HTTP on 127.0.0.1:8080, media on 127.0.0.1:8443/udp).
    Serve(Box<ServeArgs>),
    /// Check a server's configuration (as `serve` resolves it: flags, environment,
    /// --config file): TLS files, cluster CA, ports, secrets, members. Exits 1 on
    /// any error.
    CheckConfig(Box<ServeArgs>),
    /// Ask this server's own /healthz (configured like `serve`); exit 0 when healthy,
    /// 1 otherwise (also while draining). For container health checks.
    Probe(Box<cascade::probe::ProbeArgs>),
    /// Cluster trust: create a cluster CA, issue a server's certificate and credentials.
    #[command(subcommand)]
    Cluster(cascade::cluster_ca::ClusterCommand),
    /// Mint an access token (JWT, HS256) and print it.
    Token {
        /// Token secret (`SECRET` or `KID:SECRET`; the key id goes in the JWT header).
        #[arg(long, env = "CASCADE_TOKEN_SECRET")]
        secret: Secret,
        #[arg(long)]
        room: String,
        #[arg(long)]
        user: String,
        /// What the token allows (publish, subscribe); repeat for several.
        #[arg(long = "grant", required = true)]
        grants: Vec<Grant>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Run the Smart DNS / HTTPDNS service for a media zone.
    Dns(cascade_dns::DnsArgs),
    /// Run the signalling service (IM channel with durable inboxes; WebSocket on 127.0.0.1:8090).
    Signal(cascade_signal::SignalArgs),
    /// Talk to a cascade signal service from the terminal: commands on standard input
    /// (send USER TEXT, room ROOM TEXT, join ROOM, leave ROOM, ack SEQ, ping), every
    /// frame received printed as a JSON line.
    SignalCli(cascade_signal::cli::CliArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            cascade::logging::init(cli.log_format, "info");
            let config = args.resolve()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .worker_threads(2)
                .build()?
                .block_on(cascade::server::serve(config))
        }
        Command::CheckConfig(args) => {
            let ok = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(cascade::check_config::run(*args));
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Probe(args) => {
            let url = cascade::probe::health_url(*args)?;
            let ok = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(cascade::probe::run(&url));
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Cluster(command) => cascade::cluster_ca::run(command),
        Command::Token {
            secret,
            room,
            user,
            grants,
            ttl,
        } => {
            let now = unix_now();
            let token = mint(
                &TokenSecret::parse(secret.expose()),
                &Claims {
                    sub: user,
                    room,
                    grants,
                    exp: now + ttl,
                    iat: now,
                },
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Dns(args) => {
            cascade::logging::init(cli.log_format, cascade_dns::DEFAULT_LOG_FILTER);
            run_service(
                cascade_dns::start(args.into()),
                |r| {
                    format!(
                        "cascade dns listening: dns=udp://{} http=http://{}",
                        r.dns_addr, r.http_addr
                    )
                },
                async |r| r.shutdown().await,
            )
        }
        Command::Signal(args) => {
            cascade::logging::init(cli.log_format, cascade_signal::DEFAULT_LOG_FILTER);
            run_service(
                cascade_signal::start(args.into()),
                |r| {
                    format!(
                        "cascade signal listening: ws://{addr}/v1/connect http://{addr}",
                        addr = r.addr
                    )
                },
                async |r| r.shutdown().await,
            )
        }
        Command::SignalCli(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(cascade_signal::cli::run(args)),
    }
}

/// Runs a service (`cascade dns`, `cascade signal`) on a two-thread runtime: starts
/// it, prints the line `announce` makes of it on standard output once it is ready,
/// and stops it on SIGINT or SIGTERM.
fn run_service<S>(
    start: impl Future<Output = anyhow::Result<S>>,
    announce: impl FnOnce(&S) -> String,
    stop: impl AsyncFnOnce(S),
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?
        .block_on(async move {
            let running = start.await?;
            {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", announce(&running))?;
                out.flush()?;
            }
            shutdown_signal().await;
            tracing::info!("stopping");
            stop(running).await;
            Ok(())
        })
}

/// Resolves on SIGINT or SIGTERM (on SIGINT alone where SIGTERM cannot be watched).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
