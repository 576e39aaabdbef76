//! Self-signed certificates for the TLS tests, made with the `cryptography` package of the
//! project's venv (moto depends on it), so no certificate tool has to be installed.

use std::path::{Path, PathBuf};

/// Writes `<name>.crt` and `<name>.key` (PEM, ECDSA P-256) for 127.0.0.1 and localhost into
/// `dir`, and returns their paths.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let script = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sys.argv[3])])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
open(sys.argv[1], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[2], "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
    let out = std::process::Command::new(super::tool("python3"))
        .args(["-c", script])
        .arg(&cert)
        .arg(&key)
        .arg(name)
        .output()
        .expect("the venv's python (scripts/setup.sh)");
    assert!(out.status.success(), "making a certificate: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}
