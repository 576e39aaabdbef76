//! Certificates for the TLS tests, made with the `cryptography` package of the project's venv
//! (moto depends on it), so no certificate tool has to be installed.

use std::path::{Path, PathBuf};

/// A server certificate for 127.0.0.1 and localhost, and the CA that signed it.
pub struct Certificate {
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, ECDSA P-256).
    pub key: PathBuf,
    /// The CA a client trusts to accept it (PEM).
    pub ca: PathBuf,
}

/// Writes `<name>.crt`, `<name>.key` and `<name>-ca.crt` into `dir`.
pub fn certificate(dir: &Path, name: &str) -> Certificate {
    let c = Certificate { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")), ca: dir.join(format!("{name}-ca.crt")) };
    let script = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
now = datetime.datetime.now(datetime.timezone.utc)
def named(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
def builder(subject, issuer, key):
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)))
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = (builder(named(sys.argv[4] + " CA"), named(sys.argv[4] + " CA"), ca_key)
      .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
      .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
      .sign(ca_key, hashes.SHA256()))
key = ec.generate_private_key(ec.SECP256R1())
cert = (builder(named(sys.argv[4]), ca.subject, key)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
open(sys.argv[1], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[2], "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
open(sys.argv[3], "wb").write(ca.public_bytes(serialization.Encoding.PEM))
"#;
    let out = std::process::Command::new(super::tool("python3"))
        .args(["-c", script])
        .args([&c.cert, &c.key, &c.ca])
        .arg(name)
        .output()
        .expect("the venv's python (scripts/setup.sh)");
    assert!(out.status.success(), "making a certificate: {}", String::from_utf8_lossy(&out.stderr));
    c
}
