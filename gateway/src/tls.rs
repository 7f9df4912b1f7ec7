//! TLS on the public listener (rustls only): PEM certificate chain and key from files, reloaded when
//! either file changes, so a renewed certificate takes effect without a restart; connections already
//! open keep theirs. Each connection is served by hyper (HTTP/1.1 and HTTP/2 via ALPN) and drained on
//! shutdown like the plain listener.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    ServerConfig,
};
use tokio_rustls::TlsAcceptor;

/// Loads a certificate chain and its key into a rustls server config.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("server.tls.cert_file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("server.tls.cert_file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("server.tls.cert_file {}: no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("server.tls.key_file {}: {e}", key.display()))?;
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn mtimes(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}

/// Serves `app` over TLS until `stop` turns true, then waits for open connections to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    cert: PathBuf,
    key: PathBuf,
    reload_every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let current = Arc::new(RwLock::new(load(&cert, &key)?));
    let reloader = {
        let current = Arc::clone(&current);
        let (cert, key) = (cert.clone(), key.clone());
        tokio::spawn(async move {
            let mut seen = mtimes(&cert, &key);
            loop {
                tokio::time::sleep(reload_every).await;
                let now = mtimes(&cert, &key);
                if now == seen {
                    continue;
                }
                seen = now;
                match load(&cert, &key) {
                    Ok(cfg) => {
                        if let Ok(mut c) = current.write() {
                            *c = cfg;
                        }
                        tracing::info!("TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS certificate reload failed; keeping the previous one")
                    }
                }
            }
        })
    };
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let Ok(cfg) = current.read().map(|c| Arc::clone(&c)) else { continue };
                let acceptor = TlsAcceptor::from(cfg);
                let svc = TowerToHyperService::new(app.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        _ => return,
                    };
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    reloader.abort();
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
