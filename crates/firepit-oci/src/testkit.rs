//! Test and benchmark tools (feature `testkit`): a real registry (Debian's
//! `docker-registry`) on a loopback port, optionally asking for basic auth, and pushes to it
//! with `skopeo`. Panics on failure: it serves tests.
#![allow(missing_docs)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `docker-registry` on a loopback port, stopped on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub creds: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; with `creds`, it asks for basic auth (htpasswd, bcrypt).
    pub fn start(creds: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = creds {
            // bcrypt, as the registry wants, from the system's crypt(3).
            let out = Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import crypt,sys;print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                    password,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let hash = String::from_utf8(out.stdout).unwrap();
            std::fs::write(
                dir.path().join("htpasswd"),
                format!("{user}:{}\n", hash.trim()),
            )
            .unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        // Wait until it answers (a readiness wait, not a timing assertion).
        for _ in 0..300 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Registry {
            child,
            addr,
            creds: creds.map(|(u, p)| (u.to_owned(), p.to_owned())),
            _dir: dir,
        }
    }

    /// Pushes `layout:tag` to `repo:tag` with skopeo (every image of an index).
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) {
        self.push_with(layout, tag, repo, &[]);
    }

    /// [`Registry::push`] with more skopeo flags (`--dest-compress-format=zstd`, say).
    pub fn push_with(&self, layout: &Path, tag: &str, repo: &str, flags: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        cmd.args(flags);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        let out = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {out:?}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
