//! Outgoing `wss://` connections: TLS on the shards against a tokio-tungstenite server behind
//! tokio-rustls, with a CA made at test time. A certificate the client does not trust, or one
//! for another name, reaches the handler as `DialError::Tls` with a reason in words; a server
//! that wants a client certificate gets one when it is configured.

use std::time::Duration;

use crate::dial_support::*;
use ringsock_actors::{BackendKind, DialError, DialOptions, TlsOptions};
use ringsock_testkit::on_both_backends;

fn echo_with_the_test_ca(kind: BackendKind) {
    let pki = Pki::localhost();
    let (addr, server) = wss_echo_server(pki.server_config(false));
    let client = client_runtime(kind);
    let options = DialOptions::new().tls(pki.trusting());
    let seen = exchange(
        &client,
        &format!("wss://{addr}/"),
        &options,
        &["one", "two"],
    );
    assert_eq!(summary(&seen), ECHOED);
    let saw = crate::support::recv_within(&server, crate::support::STEP, "the server's report");
    assert_eq!(saw.result, Ok(()));
    // An IP address sends no SNI; the certificate's IP name is what matched.
    assert_eq!(saw.sni, None);
    client.shutdown(Duration::from_secs(1));
}

/// Messages far larger than a TLS record (16 KiB) and the receive buffers, both ways.
fn large_messages_cross_many_records(kind: BackendKind) {
    let pki = Pki::localhost();
    let (addr, server) = wss_echo_server(pki.server_config(false));
    let client = client_runtime(kind);
    let options = DialOptions::new().tls(pki.trusting());
    let big: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let seen = exchange(
        &client,
        &format!("wss://{addr}/"),
        &options,
        &[&big, "small", &big],
    );
    assert_eq!(
        summary(&seen),
        [
            "open 101",
            "text of 300000 bytes",
            "text small",
            "text of 300000 bytes",
            "closed 1000"
        ]
    );
    assert!(matches!(&seen[1], Seen::Text(t) if *t == big));
    let saw = crate::support::recv_within(&server, crate::support::STEP, "the server's report");
    assert_eq!(saw.result, Ok(()));
    client.shutdown(Duration::from_secs(1));
}

fn an_untrusted_certificate_is_a_tls_error(kind: BackendKind) {
    let pki = Pki::localhost();
    let (addr, server) = wss_echo_server(pki.server_config(false));
    let client = client_runtime(kind);
    // Mozilla's roots only: the test CA is unknown.
    let seen = exchange(
        &client,
        &format!("wss://{addr}/"),
        &DialOptions::new(),
        &["one"],
    );
    match seen.as_slice() {
        [Seen::Failed(DialError::Tls(e))] => {
            assert!(e.is_certificate_error(), "{e:?}");
            assert_eq!(
                e.to_string(),
                format!(
                    "TLS with {addr} failed: the server's certificate is not signed by a trusted \
                     certificate authority (a private or self-signed CA must be added with \
                     TlsOptions::ca_pem)"
                )
            );
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // The client said why before it closed: the server's handshake fails on its alert.
    let saw = crate::support::recv_within(&server, crate::support::STEP, "the server's report");
    let result = saw.result.unwrap_err();
    assert!(result.contains("UnknownCA"), "{result}");
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn a_certificate_for_another_name_is_a_tls_error() {
    let pki = Pki::new(&["elsewhere.test"]);
    let (addr, _server) = wss_echo_server(pki.server_config(false));
    let client = client_runtime(BackendKind::Epoll);
    let options = DialOptions::new().tls(pki.trusting());
    let seen = exchange(&client, &format!("wss://{addr}/"), &options, &["one"]);
    match seen.as_slice() {
        [Seen::Failed(DialError::Tls(e))] => assert!(
            e.to_string()
                .ends_with("the server's certificate is not valid for this host name"),
            "{e}"
        ),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    client.shutdown(Duration::from_secs(1));
}

fn a_client_certificate_is_presented_when_asked(kind: BackendKind) {
    let pki = Pki::localhost();
    let client = client_runtime(kind);

    let (addr, server) = wss_echo_server(pki.server_config(true));
    let tls = TlsOptions::new()
        .ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .client_cert_pem(
            pki.client_cert_pem.as_bytes(),
            pki.client_key_pem.as_bytes(),
        )
        .unwrap()
        .build()
        .unwrap();
    let options = DialOptions::new().tls(tls);
    let seen = exchange(
        &client,
        &format!("wss://{addr}/"),
        &options,
        &["one", "two"],
    );
    assert_eq!(summary(&seen), ECHOED);
    let saw = crate::support::recv_within(&server, crate::support::STEP, "the server's report");
    assert_eq!(saw.result, Ok(()));

    // Without one, the server refuses, and the handler hears why.
    let (addr, server) = wss_echo_server(pki.server_config(true));
    let options = DialOptions::new().tls(pki.trusting());
    let seen = exchange(&client, &format!("wss://{addr}/"), &options, &["one"]);
    match seen.as_slice() {
        [Seen::Failed(DialError::Tls(e))] => assert!(
            e.to_string().ends_with(
                "the server requires a client certificate \
                 (set one with TlsOptions::client_cert_pem)"
            ),
            "{e}"
        ),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert!(
        crate::support::recv_within(&server, crate::support::STEP, "the server's report")
            .result
            .is_err()
    );
    client.shutdown(Duration::from_secs(1));
}

on_both_backends!(
    echo_with_the_test_ca,
    large_messages_cross_many_records,
    an_untrusted_certificate_is_a_tls_error,
    a_client_certificate_is_presented_when_asked,
);
