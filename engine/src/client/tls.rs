//! TLS for outgoing connections: the options (roots, private CAs, a client certificate), the
//! built configuration shared by many connections, readable errors, and the per-connection
//! sans-io layers the shard runs between the socket and the WebSocket.

use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, Write};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, RootCertStore};

/// What a TLS client trusts and how it identifies itself; [`TlsOptions::build`] turns it into a
/// [`TlsConfig`] to hand to [`crate::client::DialOptions::tls`] or [`crate::client::Proxy::tls`].
///
/// By default servers are checked against Mozilla's root certificates, compiled into the binary
/// (`webpki-roots`): the same trust on every machine, with nothing read from disk, so a fresh
/// container without a CA bundle still reaches public servers. A server with a certificate from
/// a private CA (a company CA, a test CA) needs that CA added with [`TlsOptions::ca_pem`] or
/// [`TlsOptions::ca_der`].
#[derive(Default)]
pub struct TlsOptions {
    no_builtin_roots: bool,
    cas: Vec<CertificateDer<'static>>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Clone for TlsOptions {
    fn clone(&self) -> Self {
        Self {
            no_builtin_roots: self.no_builtin_roots,
            cas: self.cas.clone(),
            client_cert: self
                .client_cert
                .as_ref()
                .map(|(chain, key)| (chain.clone(), key.clone_key())),
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key is never printed.
        f.debug_struct("TlsOptions")
            .field("builtin_roots", &!self.no_builtin_roots)
            .field("extra_cas", &self.cas.len())
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// Mozilla's roots, no extra CA, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts the CA certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks), e.g. a
    /// company CA or the CA that signed a test server's certificate. Refused if `pem` holds no
    /// certificate.
    pub fn ca_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        let before = self.cas.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsError::config(format!("reading CA PEM: {e}")))?;
            self.cas.push(cert);
        }
        if self.cas.len() == before {
            return Err(TlsError::config("the CA PEM holds no certificate"));
        }
        Ok(self)
    }

    /// Also trusts the CA certificate `der` (DER-encoded X.509); checked by
    /// [`TlsOptions::build`].
    pub fn ca_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.cas.push(CertificateDer::from(der.into()));
        self
    }

    /// Trusts only the CAs added with [`TlsOptions::ca_pem`] / [`TlsOptions::ca_der`], not
    /// Mozilla's roots: for a client that must only ever reach servers of a private PKI.
    pub fn only_custom_roots(mut self) -> Self {
        self.no_builtin_roots = true;
        self
    }

    /// Presents a client certificate to servers that ask for one (mutual TLS): `chain_pem` holds
    /// the certificate first, then any intermediates; `key_pem` its private key (PKCS#8, PKCS#1
    /// or SEC1).
    pub fn client_cert_pem(mut self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::config(format!("reading the client certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError::config(
                "the client certificate PEM holds no certificate",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::config(format!("reading the client key PEM: {e}")))?;
        self.client_cert = Some((chain, key));
        Ok(self)
    }

    /// As [`TlsOptions::client_cert_pem`], from DER: the certificate chain (leaf first) and the
    /// private key (PKCS#8, PKCS#1 or SEC1, told apart by their encoding).
    pub fn client_cert_der(mut self, chain: Vec<Vec<u8>>, key: Vec<u8>) -> Result<Self, TlsError> {
        if chain.is_empty() {
            return Err(TlsError::config("the client certificate chain is empty"));
        }
        let key = PrivateKeyDer::try_from(key)
            .map_err(|e| TlsError::config(format!("the client key: {e}")))?;
        self.client_cert = Some((chain.into_iter().map(CertificateDer::from).collect(), key));
        Ok(self)
    }

    /// Builds the configuration: once, then shared by every connection that uses it (and so are
    /// its TLS session tickets, for quicker reconnects).
    pub fn build(&self) -> Result<TlsConfig, TlsError> {
        let mut roots = RootCertStore::empty();
        if !self.no_builtin_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for ca in &self.cas {
            roots
                .add(ca.clone())
                .map_err(|e| TlsError::config(format!("a CA certificate cannot be used: {e}")))?;
        }
        if roots.is_empty() {
            return Err(TlsError::config(
                "no trusted roots: only_custom_roots() needs a CA added with ca_pem or ca_der",
            ));
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::config(e.to_string()))?
                .with_root_certificates(roots);
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| TlsError::config(format!("the client certificate: {e}")))?,
        };
        Ok(TlsConfig {
            config: Arc::new(config),
        })
    }
}

/// A built TLS client configuration: cheap to clone, shared by the connections that use it.
/// [`TlsConfig::default`] is Mozilla's roots with no client certificate, built once per
/// process.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        static DEFAULT: OnceLock<TlsConfig> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                TlsOptions::new()
                    .build()
                    .expect("the built-in roots make a valid configuration")
            })
            .clone()
    }
}

impl TlsConfig {
    /// Uses a rustls configuration made elsewhere: another root store (the platform's, through
    /// `rustls-native-certs` or `rustls-platform-verifier`), a custom verifier, ALPN, key logging.
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    /// The rustls configuration.
    pub fn rustls(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

/// Why TLS failed: a certificate the client does not trust, a server that refused the
/// handshake, a broken record, or an option that cannot be used. The text says which, in words.
#[derive(Clone, Debug)]
pub struct TlsError {
    /// Who the TLS session was with (`host:port`, or `the proxy host:port`); `None` for
    /// configuration errors.
    peer: Option<String>,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Rustls(rustls::Error),
    Message(String),
}

impl TlsError {
    fn config(message: impl Into<String>) -> Self {
        Self {
            peer: None,
            kind: Kind::Message(message.into()),
        }
    }

    fn session(peer: &str, error: rustls::Error) -> Self {
        Self {
            peer: Some(peer.to_owned()),
            kind: Kind::Rustls(error),
        }
    }

    fn message(peer: &str, message: impl Into<String>) -> Self {
        Self {
            peer: Some(peer.to_owned()),
            kind: Kind::Message(message.into()),
        }
    }

    /// The rustls error underneath, for matching on its kind.
    pub fn rustls_error(&self) -> Option<&rustls::Error> {
        match &self.kind {
            Kind::Rustls(e) => Some(e),
            Kind::Message(_) => None,
        }
    }

    /// Whether the server's certificate was refused (untrusted issuer, wrong name, expired…).
    pub fn is_certificate_error(&self) -> bool {
        matches!(
            self.rustls_error(),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        )
    }

    /// Who the session was with: `host:port`, or `the proxy host:port`.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.peer, &self.kind) {
            (None, Kind::Message(m)) => write!(f, "TLS configuration: {m}"),
            (None, Kind::Rustls(e)) => write!(f, "TLS failed: {}", explain(e)),
            (Some(peer), Kind::Message(m)) => write!(f, "TLS with {peer} failed: {m}"),
            (Some(peer), Kind::Rustls(e)) => write!(f, "TLS with {peer} failed: {}", explain(e)),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Rustls(e) => Some(e),
            Kind::Message(_) => None,
        }
    }
}

/// A rustls error in words a person acts on.
fn explain(e: &rustls::Error) -> Cow<'static, str> {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => Cow::Borrowed(
                "the server's certificate is not signed by a trusted certificate authority \
                 (a private or self-signed CA must be added with TlsOptions::ca_pem)",
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Cow::Borrowed("the server's certificate is not valid for this host name")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Cow::Borrowed("the server's certificate has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Cow::Borrowed("the server's certificate is not valid yet (check the clock)")
            }
            CertificateError::Revoked => Cow::Borrowed("the server's certificate was revoked"),
            CertificateError::BadSignature => {
                Cow::Borrowed("the server's certificate has a bad signature")
            }
            other => Cow::Owned(format!("the server's certificate was refused: {other:?}")),
        },
        E::NoCertificatesPresented => Cow::Borrowed("the server presented no certificate"),
        E::AlertReceived(AlertDescription::CertificateRequired) => Cow::Borrowed(
            "the server requires a client certificate (set one with TlsOptions::client_cert_pem)",
        ),
        E::AlertReceived(
            a @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => Cow::Owned(format!(
            "the server refused the client certificate (alert {a:?})"
        )),
        E::AlertReceived(a) => Cow::Owned(format!(
            "the server ended the TLS handshake with the alert {a:?}"
        )),
        E::PeerIncompatible(p) => Cow::Owned(format!(
            "the server offers no TLS version or cipher suite this client accepts ({p:?})"
        )),
        other => Cow::Owned(other.to_string()),
    }
}

/// One TLS session of a connection.
struct Layer {
    conn: ClientConnection,
    /// For error messages: `host:port` or `the proxy host:port`.
    peer: String,
}

/// The TLS sessions of one outgoing connection, outermost first: usually one (to the server),
/// or one to an `https://` proxy with, for `wss://`, a second to the server inside the tunnel.
///
/// Sans-io: bytes from the socket go in through [`TlsLayers::receive`] and come out as the
/// innermost plaintext; plaintext written with [`TlsLayers::send`] comes out of
/// [`TlsLayers::transmit`] as chunks for the socket.
pub(crate) struct TlsLayers {
    layers: Vec<Layer>,
    /// The connection ends cleanly: send `close_notify` with the next transmit.
    closing: bool,
    closed: bool,
}

impl TlsLayers {
    pub(crate) fn new() -> Self {
        Self {
            layers: Vec::with_capacity(1),
            closing: false,
            closed: false,
        }
    }

    /// Starts a session to `host` (SNI and certificate name; an IP address is checked against
    /// the certificate's IP names and sends no SNI) inside the existing ones. `peer` names it in
    /// errors. Its ClientHello waits for the next [`TlsLayers::transmit`].
    pub(crate) fn push(
        &mut self,
        config: &TlsConfig,
        host: &str,
        peer: String,
    ) -> Result<(), TlsError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError::message(&peer, format!("{host:?} is not a valid TLS name")))?;
        let mut conn = ClientConnection::new(config.config.clone(), name)
            .map_err(|e| TlsError::session(&peer, e))?;
        // Output is bounded by the shard's backpressure (it counts what waits to be written),
        // and every write is drained at once, so rustls need not refuse any.
        conn.set_buffer_limit(None);
        self.layers.push(Layer { conn, peer });
        Ok(())
    }

    /// The number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.layers.len()
    }

    /// Feeds bytes that arrived for layer `from` (0: from the socket; a deeper layer for bytes
    /// an outer layer already decrypted) through it and every layer inside it, and appends the
    /// innermost plaintext to `plain`. An error ends the session; the alert rustls queued for
    /// the peer leaves with the next transmit.
    pub(crate) fn receive(
        &mut self,
        from: usize,
        data: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        let Some(last) = self.layers.len().checked_sub(1) else {
            plain.extend_from_slice(data);
            return Ok(());
        };
        let mut input = Cow::Borrowed(data);
        for layer in &mut self.layers[from.min(last)..last] {
            let mut next = Vec::new();
            layer.receive(&input, &mut next)?;
            if next.is_empty() {
                return Ok(());
            }
            input = Cow::Owned(next);
        }
        self.layers[last].receive(&input, plain)
    }

    /// Writes plaintext into the innermost session (buffered by rustls until its handshake is
    /// done).
    pub(crate) fn send(&mut self, plain: &[u8]) {
        if let Some(layer) = self.layers.last_mut() {
            // Unlimited buffers: a write is only refused after close_notify, when nothing more
            // may be sent anyway.
            let _ = layer.conn.writer().write_all(plain);
        }
    }

    /// Asks for a clean end: every session sends `close_notify` with the next transmit, after
    /// whatever was sent before.
    pub(crate) fn close(&mut self) {
        self.closing = true;
    }

    /// Moves what each session has to write outwards (an inner session's records are an outer
    /// one's plaintext) and hands the outermost records to `push`, in order. A session closing
    /// cleanly sends its `close_notify` after everything written before, its inner session's
    /// included.
    pub(crate) fn transmit(&mut self, mut push: impl FnMut(Bytes)) {
        let closing = self.closing && !self.closed;
        self.closed |= closing;
        for i in (0..self.layers.len()).rev() {
            let (outer, inner) = self.layers.split_at_mut(i);
            let layer = &mut inner[0];
            if closing {
                layer.conn.send_close_notify();
            }
            while layer.conn.wants_write() {
                let mut records = Vec::new();
                if layer.conn.write_tls(&mut records).is_err() || records.is_empty() {
                    break;
                }
                match outer.last_mut() {
                    Some(outer) => {
                        let _ = outer.conn.writer().write_all(&records);
                    }
                    None => push(Bytes::from(records)),
                }
            }
        }
    }
}

impl Layer {
    /// Feeds `data` through this session and appends its plaintext to `out`.
    fn receive(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        loop {
            // Drain first: rustls stops taking records while its plaintext buffer is full.
            self.drain(out);
            if data.is_empty() {
                return Ok(());
            }
            match self.conn.read_tls(&mut data) {
                // close_notify came: nothing after it is read.
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(TlsError::message(&self.peer, e.to_string())),
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.drain(out);
                return Err(TlsError::session(&self.peer, e));
            }
        }
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        let mut reader = self.conn.reader();
        // WouldBlock (nothing yet), Ok(empty) after close_notify, or UnexpectedEof: all mean
        // there is nothing more to take now.
        while let Ok(chunk) = reader.fill_buf() {
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            out.extend_from_slice(chunk);
            reader.consume(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedKey, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::{ServerConfig, ServerConnection};

    /// A CA, and a server certificate for `names` signed by it.
    struct Pki {
        ca_pem: String,
        server: CertifiedKey<KeyPair>,
    }

    fn pki(names: &[&str]) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ringsock unit-test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(params, ca_key);
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server: CertifiedKey {
                cert,
                signing_key: key,
            },
        }
    }

    fn server(pki: &Pki) -> ServerConnection {
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![pki.server.cert.der().clone()],
                    PrivateKeyDer::try_from(pki.server.signing_key.serialize_der()).unwrap(),
                )
                .unwrap();
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    fn trusting(pki: &Pki) -> TlsConfig {
        TlsOptions::new()
            .ca_pem(pki.ca_pem.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    }

    /// Runs bytes both ways until neither side has anything to say; returns the client's
    /// plaintext and the server's.
    fn pump(
        client: &mut TlsLayers,
        server: &mut ServerConnection,
    ) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let mut wire = Vec::new();
            client.transmit(|b| wire.extend_from_slice(&b));
            let mut rd = &wire[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                if server.process_new_packets().is_err() {
                    break;
                }
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut server.reader(), &mut buf) {
                if n == 0 {
                    break;
                }
                at_server.extend_from_slice(&buf[..n]);
            }
            let mut back = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut back).unwrap();
            }
            if wire.is_empty() && back.is_empty() {
                break;
            }
            client.receive(0, &back, &mut at_client)?;
        }
        Ok((at_client, at_server))
    }

    #[test]
    fn one_session_carries_plaintext_both_ways() {
        let pki = pki(&["example.test"]);
        let mut client = TlsLayers::new();
        client
            .push(&trusting(&pki), "example.test", "example.test:443".into())
            .unwrap();
        client.send(b"GET / HTTP/1.1\r\n\r\n");
        let mut server = server(&pki);
        let (_, at_server) = pump(&mut client, &mut server).unwrap();
        assert_eq!(at_server, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            server.server_name(),
            Some("example.test"),
            "SNI is the host"
        );
        server.writer().write_all(b"HTTP/1.1 101 ok").unwrap();
        let (at_client, _) = pump(&mut client, &mut server).unwrap();
        assert_eq!(at_client, b"HTTP/1.1 101 ok");
    }

    #[test]
    fn a_clean_close_sends_close_notify_after_the_data() {
        let pki = pki(&["example.test"]);
        let mut client = TlsLayers::new();
        client
            .push(&trusting(&pki), "example.test", "example.test:443".into())
            .unwrap();
        let mut server = server(&pki);
        pump(&mut client, &mut server).unwrap();
        client.send(b"last words");
        client.close();
        let (_, at_server) = pump(&mut client, &mut server).unwrap();
        assert_eq!(at_server, b"last words");
        let mut buf = [0u8; 16];
        assert_eq!(
            std::io::Read::read(&mut server.reader(), &mut buf).unwrap(),
            0,
            "close_notify ends the server's plaintext cleanly"
        );
    }

    #[test]
    fn an_untrusted_certificate_is_an_error_that_says_so() {
        let pki = pki(&["example.test"]);
        let mut client = TlsLayers::new();
        client
            .push(
                &TlsConfig::default(),
                "example.test",
                "example.test:443".into(),
            )
            .unwrap();
        let err = pump(&mut client, &mut server(&pki)).unwrap_err();
        assert!(err.is_certificate_error(), "{err:?}");
        assert_eq!(
            err.to_string(),
            "TLS with example.test:443 failed: the server's certificate is not signed by a \
             trusted certificate authority (a private or self-signed CA must be added with \
             TlsOptions::ca_pem)"
        );
    }

    #[test]
    fn a_certificate_for_another_name_is_refused() {
        let pki = pki(&["other.test"]);
        let mut client = TlsLayers::new();
        client
            .push(&trusting(&pki), "example.test", "example.test:443".into())
            .unwrap();
        let err = pump(&mut client, &mut server(&pki)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the server's certificate is not valid for this host name"),
            "{err}"
        );
    }

    /// An `https://` proxy with `wss://` inside: the proxy's session carries the server's.
    #[test]
    fn a_session_inside_another_reaches_the_inner_server() {
        let (proxy_pki, origin_pki) = (pki(&["proxy.test"]), pki(&["origin.test"]));
        let mut client = TlsLayers::new();
        client
            .push(&trusting(&proxy_pki), "proxy.test", "the proxy".into())
            .unwrap();
        let mut proxy = server(&proxy_pki);
        client.send(b"CONNECT origin.test:443 HTTP/1.1\r\n\r\n");
        let (_, at_proxy) = pump(&mut client, &mut proxy).unwrap();
        assert_eq!(at_proxy, b"CONNECT origin.test:443 HTTP/1.1\r\n\r\n");

        client
            .push(&trusting(&origin_pki), "origin.test", "origin".into())
            .unwrap();
        assert_eq!(client.len(), 2);
        client.send(b"hello origin");
        let mut origin = server(&origin_pki);
        // The proxy splices: what it decrypts goes to the origin, and back.
        let (mut at_origin, mut at_client, mut replied) = (Vec::new(), Vec::new(), false);
        for _ in 0..20 {
            let (plain, to_origin) = pump(&mut client, &mut proxy).unwrap();
            at_client.extend_from_slice(&plain);
            let mut rd = &to_origin[..];
            while !rd.is_empty() {
                origin.read_tls(&mut rd).unwrap();
                origin.process_new_packets().unwrap();
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut origin.reader(), &mut buf) {
                if n == 0 {
                    break;
                }
                at_origin.extend_from_slice(&buf[..n]);
            }
            if at_origin == b"hello origin" && !replied {
                origin.writer().write_all(b"hello client").unwrap();
                replied = true;
            }
            let mut back = Vec::new();
            while origin.wants_write() {
                origin.write_tls(&mut back).unwrap();
            }
            if to_origin.is_empty() && back.is_empty() && replied {
                break;
            }
            proxy.writer().write_all(&back).unwrap();
        }
        assert_eq!(at_origin, b"hello origin");
        assert_eq!(at_client, b"hello client");
        assert_eq!(origin.server_name(), Some("origin.test"));
    }

    #[test]
    fn options_that_cannot_work_are_refused_with_a_reason() {
        let err = TlsOptions::new().ca_pem(b"not pem").unwrap_err();
        assert_eq!(
            err.to_string(),
            "TLS configuration: the CA PEM holds no certificate"
        );
        let err = TlsOptions::new().only_custom_roots().build().unwrap_err();
        assert!(err.to_string().contains("no trusted roots"), "{err}");
        let err = TlsOptions::new()
            .ca_der(b"garbage".to_vec())
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("TLS configuration: a CA certificate cannot be used"),
            "{err}"
        );
        assert!(TlsOptions::new()
            .client_cert_pem(b"", b"")
            .unwrap_err()
            .to_string()
            .contains("no certificate"));
    }
}
