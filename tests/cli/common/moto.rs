//! A real S3 API server (moto) on loopback for the S3 tests.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server on a free loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    /// The server's request log (one line per request, as werkzeug writes it).
    log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(super::tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("moto_server must be installed (pip install 'moto[server]'); .ci/run installs it");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port, log }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An empty bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let empty = tempfile::tempdir().unwrap();
        self.upload(empty.path(), bucket, "");
    }

    /// Create a bucket and upload every file under `dir` below `prefix`, with boto3.
    pub fn upload(&self, dir: &std::path::Path, bucket: &str, prefix: &str) {
        let script = r#"
import os, sys, boto3
endpoint, bucket, prefix, root = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=bucket)
for dirpath, _, files in os.walk(root):
    for f in files:
        path = os.path.join(dirpath, f)
        s3.upload_file(path, bucket, prefix + os.path.relpath(path, root))
"#;
        let status = Command::new(super::tool("python3"))
            .args(["-c", script, &self.endpoint(), bucket, prefix, dir.to_str().unwrap()])
            .status()
            .expect("python3 with boto3");
        assert!(status.success(), "uploading test files to moto failed");
    }

    /// What the binary needs to reach this server: test credentials and the endpoint.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// The requests served so far whose line contains `needle` (`GET /bucket/key`, say).
    pub fn requests(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.log.path()).unwrap_or_default().lines().filter(|l| l.contains(needle)).count()
    }

    /// Stop the server now (its buckets are gone with it).
    pub fn stop(self) {}
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
