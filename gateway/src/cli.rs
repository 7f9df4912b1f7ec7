//! The command line: `serve`, `check-config`, `keys create|list|revoke`, `--version`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use tollgate_policy::{KeySpec, Keys};

use crate::config::{Config, StoreConfig};

#[derive(Parser)]
#[command(name = "tollgate", version, about = "An OpenAI-compatible LLM gateway")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short, default_value = "tollgate.toml")]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 when valid, 1 with every error otherwise.
    CheckConfig { file: PathBuf },
    /// Manage API keys in the configured store.
    Keys {
        #[arg(long, short, default_value = "tollgate.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Model globs the key may use (repeatable); all models when omitted.
        #[arg(long = "model")]
        models: Vec<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(path: &std::path::Path) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(errors) => {
            eprintln!("{}: invalid configuration:", path.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            None
        }
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load(&file) {
            Some(c) => {
                println!(
                    "{}: ok ({} providers, {} models)",
                    file.display(),
                    c.providers.len(),
                    c.models.len()
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        },
        Command::Serve { config: path } => {
            init_logging(cli.log_format);
            let Some(config) = load(&path) else {
                return ExitCode::FAILURE;
            };
            for p in config.providers.iter().filter(|p| !p.available) {
                tracing::warn!(provider = %p.name, "provider credentials not set: routing skips it");
            }
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let served = rt.block_on(crate::app::serve(config, Some(path)));
            // Dropping the runtime drops requests still running past the grace period; their usage
            // guards record them as cancelled before the writer, now the last holder, drains and exits.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            match served {
                Ok(mut usage) => {
                    let writer = std::mem::replace(&mut usage.writer, std::thread::spawn(|| {}));
                    if writer.join().is_err() {
                        tracing::error!("usage spool writer failed");
                        return ExitCode::FAILURE;
                    }
                    // Ship what the spool holds for a few seconds; anything left is replayed at the next start.
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        let (_stop, stop_rx) = tokio::sync::watch::channel(true);
                        let shipped = rt.block_on(async {
                            tokio::time::timeout(std::time::Duration::from_secs(10), usage.ship(stop_rx))
                                .await
                        });
                        if shipped.is_err() {
                            tracing::warn!("usage sink unreachable at shutdown: events stay in the spool for the next start");
                        }
                    }
                    tracing::info!("stopped");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "server failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys { config, action } => {
            let Some(config) = load(&config) else {
                return ExitCode::FAILURE;
            };
            if config.store
                == (StoreConfig::Sqlite {
                    path: ":memory:".into(),
                })
            {
                eprintln!(
                    "store.path is :memory:: keys there live only inside the server; use the admin API"
                );
                return ExitCode::FAILURE;
            }
            match keys(&config, action) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn keys(config: &Config, action: KeysAction) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (store, _) = crate::app::open_store(&config.store).await?;
        let keys = Keys::new(store);
        match action {
            KeysAction::Create { name, models } => {
                let k = keys
                    .create(KeySpec {
                        name,
                        models,
                        ..Default::default()
                    })
                    .await?;
                let mut out = k.record.public();
                keys.audit("cli", "key.create", &k.record.id, out.clone()).await?;
                out["key"] = serde_json::Value::String(k.key);
                println!("{out}");
            }
            KeysAction::List => {
                for k in keys.list().await? {
                    println!("{}", k.public());
                }
            }
            KeysAction::Revoke { id } => {
                if !keys.revoke(&id).await? {
                    anyhow::bail!("no key with id `{id}`");
                }
                keys.audit("cli", "key.revoke", &id, serde_json::Value::Null)
                    .await?;
                println!("revoked {id}");
            }
        }
        Ok(())
    })
}
