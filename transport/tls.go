package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-sync/ferry/internal/atomicfile"
)

// Fingerprint is the SHA-256 of a certificate's DER encoding, in
// lowercase hex: what clients pin.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts hex with or without colons, any case.
func NormalizeFingerprint(s string) (string, error) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q: want 64 hex digits (SHA-256)", s)
	}
	return s, nil
}

// LoadOrCreateCert loads DIR/cert.pem and DIR/key.pem, making a
// self-signed ECDSA P-256 certificate the first time. It returns the
// certificate and its fingerprint.
func LoadOrCreateCert(dir string) (tls.Certificate, string, error) {
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		if err := createCert(certPath, keyPath); err != nil {
			return tls.Certificate{}, "", err
		}
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("transport: load certificate: %w", err)
	}
	return cert, Fingerprint(cert.Certificate[0]), nil
}

func createCert(certPath, keyPath string) error {
	certPEM, keyPEM, err := NewCertPEM()
	if err != nil {
		return err
	}
	// The key first: a certificate on disk always has its key (a crash
	// between the two leaves no certificate, and the next start makes a
	// new pair before any client saw one).
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(certPath, certPEM, 0o644)
}

// NewCertPEM makes a self-signed server certificate (ECDSA P-256, valid
// 20 years) and its key, PEM-encoded: for servers that keep them
// elsewhere than in files (a cluster keeps one pair in its database).
func NewCertPEM() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "ferry server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(20, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// ServerTLS is the server's TLS config: TLS 1.3 only, ALPN ferry/1, no
// session tickets (so no resumption and no 0-RTT).
func ServerTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		NextProtos:             []string{ALPN},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	}
}

// clientTLS checks the server's certificate against the pinned
// fingerprint in VerifyConnection (which, unlike VerifyPeerCertificate,
// runs on every handshake). With no pin, firstUse decides.
func clientTLS(pinned string, firstUse func(fp string) error) *tls.Config {
	return &tls.Config{
		// The chain is not checked against CAs: the pin is the trust.
		InsecureSkipVerify: true,
		NextProtos:         []string{ALPN},
		MinVersion:         tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: no certificate", ErrFingerprint)
			}
			fp := Fingerprint(cs.PeerCertificates[0].Raw)
			switch {
			case pinned != "" && fp != pinned:
				return fmt.Errorf("%w: the server presents %s, the pinned one is %s; if the server's certificate was replaced on purpose, pin the new one with --fingerprint", ErrFingerprint, fp, pinned)
			case pinned == "" && firstUse == nil:
				return fmt.Errorf("%w: no fingerprint pinned for this server (it presents %s)", ErrFingerprint, fp)
			case pinned == "":
				return firstUse(fp)
			}
			return nil
		},
	}
}
