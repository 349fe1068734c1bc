//! The viewer-facing pages and scripts (`server/src/http/web.rs`) against a real server on
//! port 0: status, content type, caching and CORS of every route, and the 404 page for
//! names no channel can have.

use std::net::SocketAddr;

use shoal::media::MediaOptions;
use shoal::peer::seeder::SeederOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::Server;

/// One pushed channel ("studio"), no demo, no seeder: these tests only need HTTP.
async fn start() -> Server {
    let config = shoal::ServeConfig {
        media: MediaOptions {
            channels: vec!["studio:key".into()],
            data_dir: Some(common::data_dir("web")),
            no_demo: true,
            config: None,
            http_fallback_rate: None,
        },
        seeder: SeederOptions {
            no_seeder: true,
            ..Default::default()
        },
        ..Default::default()
    };
    common::serve(config).await
}

struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET path` over HTTP/1.0 (so the body is never chunked).
async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: test\r\nOrigin: https://elsewhere.example\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
    Response {
        status: head[9..12].parse().unwrap(),
        head: head.to_string(),
        body: body.to_string(),
    }
}

#[tokio::test]
async fn every_route_answers_with_its_type() {
    let server = start().await;
    // (path, content type, cross-origin, text the body must contain)
    let routes = [
        ("/", "text/html", false, "/api/channels"),
        ("/c/studio", "text/html", false, "<shoal-player"),
        ("/c/not-a-channel-yet", "text/html", false, "<shoal-player"),
        ("/embed/studio", "text/html", false, "<shoal-player"),
        (
            "/embed.js",
            "text/javascript",
            true,
            "document.currentScript",
        ),
        (
            "/player.js",
            "text/javascript",
            true,
            "customElements.define",
        ),
        ("/shoal.js", "text/javascript", true, "export"),
        (
            "/shoal.d.ts",
            "application/typescript",
            true,
            "export function play",
        ),
        ("/style.css", "text/css", true, "shoal-player"),
    ];
    for (path, content_type, cors, needle) in routes {
        let r = get(server.addr, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        let ct = r.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with(content_type) && ct.contains("charset=utf-8"),
            "{path}: content-type {ct:?}"
        );
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        let acao = r.header("access-control-allow-origin");
        if cors {
            assert_eq!(acao, Some("*"), "{path}");
        } else {
            assert_eq!(acao, None, "{path}: pages need no CORS");
        }
        assert!(r.body.contains(needle), "{path}: no {needle:?} in the body");
    }
}

#[tokio::test]
async fn impossible_channel_names_get_a_404_page() {
    let server = start().await;
    let long = "x".repeat(65);
    for path in [
        "/c/bad.name".to_string(),
        "/c/a%20b".to_string(),
        "/c/%3Cscript%3E".to_string(),
        format!("/c/{long}"),
        "/embed/bad.name".to_string(),
        "/embed/%C3%A9".to_string(),
        format!("/embed/{long}"),
    ] {
        let r = get(server.addr, &path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.head);
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(r.body.contains("No such channel"), "{path}");
        assert!(
            !r.body.contains("<script"),
            "{path}: the 404 page runs nothing"
        );
    }
    // The longest valid name is still a page.
    let r = get(server.addr, &format!("/c/{}", "x".repeat(64))).await;
    assert_eq!(r.status, 200);
}
