"""TLS scan of every TLS listener Warden announces, by sslyze, judged against Mozilla "intermediate".

Each listener named in DATA_DIR/addresses.json is scanned with the scan commands that sslyze's
own Mozilla checker needs (every protocol version from SSL 2.0 to TLS 1.3 with every cipher suite
sslyze knows, the certificate chain, curves, and the known attacks: Heartbleed, CCS injection,
ROBOT, fallback SCSV, compression, renegotiation, extended master secret), plus the HTTP headers
on the listeners that speak HTTP. Warden's certificate comes from its own CA, so the CA's root
(DATA_DIR/tls/ca.crt) is the trust store for path validation. The device listener wants a client
certificate from that CA: sslyze presents a workload certificate (`warden admin certs
issue-workload --part scanner`).

A listener FAILS when any of these holds (the rules, in the order the report names them):
  scan       the scan did not complete, or a scan command the checks need errored;
  protocols  a protocol version other than TLS 1.2 or TLS 1.3 is accepted;
  ciphers    a TLS 1.2 suite is accepted that is not ECDHE key exchange with AES-GCM or
             ChaCha20-Poly1305 (the AEAD ciphers Mozilla lists; CCM is left out) and in Mozilla's
             intermediate list, or a TLS 1.3 suite outside Mozilla's three;
  curves     a key-exchange group outside Mozilla's (X25519, P-256, P-384) is accepted;
  chain      the chain does not validate against Warden's CA for the name `localhost` (the
             name the generated certificate is for, and the one devices and the CLI use);
  mozilla    sslyze's Mozilla intermediate checker reports an issue that is not in ACCEPTED below;
  hsts       (HTTPS listener) no Strict-Transport-Security header, or a max-age under Mozilla's
             63072000 s (sslyze's checker has this test switched off, so it is made here);
  client-auth (device listener) the handshake does not require a client certificate.

ACCEPTED deviations are Mozilla checks whose advice is a choice for a certificate from a public
CA, not a weakness of the TLS configuration, within a stated bound. Each is still printed with
its figure and the reason.
"""

import argparse
import dataclasses
import json
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

from cryptography.utils import CryptographyDeprecationWarning

from sslyze import (
    CertificateInfoExtraArgument,
    ClientAuthenticationCredentials,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
    SslyzeOutputAsJson,
    ServerScanResultAsJson,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    ServerScanResultIncomplete,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

# sslyze loads its bundled public trust stores too, some of whose old roots have a serial number
# cryptography warns about. Warden's CA is not among them.
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module="sslyze")

# Mozilla checks that may report an issue without failing the scan, and why. An accepted check
# still fails when the certificate does not validate against Warden's CA, or lives longer than
# LONGEST_LIFESPAN_DAYS.
LONGEST_LIFESPAN_DAYS = 398
ACCEPTED = {
    "maximum_certificate_lifespan": (
        "Mozilla's profile caps a server certificate at 366 days because browsers cap public "
        "certificates. Warden's certificate comes from Warden's own private CA (the chain rule "
        "proves it), which no browser program governs; its 397 days are a choice recorded in "
        "docs/decisions.md (TLS), and Warden re-issues it by itself 30 days before it expires "
        "(`tls.renewal_check_seconds`). The check still fails past "
        f"{LONGEST_LIFESPAN_DAYS} days, the most the CA/Browser Forum allowed public certificates "
        "from 2020 to 2026. A shorter lifetime would shrink the time a stolen server key is "
        "useful; it is a setting to choose, not a flaw in the TLS configuration."
    ),
}
NO_OCSP = (
    "Mozilla's profile lists OCSP stapling, and sslyze's checker does not test it. Warden's CA "
    "publishes a revocation list (/pki/crl.pem) and runs no OCSP responder, so there is nothing "
    "to staple; devices and parts check revocation against the list."
)
# Listeners that are not TLS, when configured (the redirect and the MQTT development listener).
PLAIN = {"redirect", "mqtt_development"}
# Listeners that speak HTTP, so their headers can be read.
HTTP = {"https", "device"}
VERSIONS = [
    ("ssl_2_0_cipher_suites", "SSL 2.0"),
    ("ssl_3_0_cipher_suites", "SSL 3.0"),
    ("tls_1_0_cipher_suites", "TLS 1.0"),
    ("tls_1_1_cipher_suites", "TLS 1.1"),
    ("tls_1_2_cipher_suites", "TLS 1.2"),
    ("tls_1_3_cipher_suites", "TLS 1.3"),
]
AEAD = ("_GCM_", "_CHACHA20_POLY1305_")


def split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def request_for(
    name: str, address: str, ca: Path, credentials, commands: set[ScanCommand] | None = None
) -> ServerScanRequest:
    host, port = split(address)
    if commands is None:
        commands = set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER)
        if name in HTTP:
            commands.add(ScanCommand.HTTP_HEADERS)
    return ServerScanRequest(
        server_location=ServerNetworkLocation(hostname="localhost", port=port, ip_address=host),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication="localhost",
            tls_client_auth_credentials=credentials,
        ),
        scan_commands=commands,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca)
            if ScanCommand.CERTIFICATE_INFO in commands else None
        ),
    )


def judge(name: str, result, ca: Path, mozilla, client_auth: str | None = None) -> dict:
    """The figures and the verdict for one listener's scan.

    `client_auth` is what a handshake without a client certificate found: sslyze only asks when
    the server requests a certificate it was not given, so a scan that presents one reports
    DISABLED.
    """
    failures: list[str] = []
    notes: list[str] = []
    summary: dict = {"listener": name, "address": result.server_location.display_string}
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        error = result.connectivity_error_trace
        failures.append(f"scan: no connection ({result.connectivity_status.value}: {error})")
        summary.update(failures=failures, notes=notes)
        return summary
    summary["client_auth"] = client_auth or result.connectivity_result.client_auth_requirement.value
    scan = result.scan_result
    for command in sorted(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER, key=lambda c: c.value):
        attempt = getattr(scan, command.value)
        if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED:
            failures.append(f"scan: {command.value} did not complete ({attempt.error_reason})")
    if failures:
        summary.update(failures=failures, notes=notes)
        return summary

    protocols, suites = [], {}
    groups = set()
    for field, label in VERSIONS:
        versioned = getattr(scan, field).result
        if versioned.accepted_cipher_suites:
            protocols.append(label)
            suites[label] = []
            for accepted in versioned.accepted_cipher_suites:
                suite = accepted.cipher_suite.name
                key = accepted.ephemeral_key
                curve = getattr(key, "curve_name", None) if key else None
                if curve:
                    groups.add(curve)
                suites[label].append(suite + (f" ({curve})" if curve else ""))
                if label == "TLS 1.2":
                    if not (suite.startswith("TLS_ECDHE_") and any(a in suite for a in AEAD)):
                        failures.append(
                            f"ciphers: TLS 1.2 suite {suite} is not ECDHE with AES-GCM or ChaCha20-Poly1305"
                        )
                    elif suite not in mozilla.ciphers.iana:
                        failures.append(f"ciphers: TLS 1.2 suite {suite} is not in Mozilla intermediate")
                elif label == "TLS 1.3" and suite not in mozilla.ciphersuites:
                    failures.append(f"ciphers: TLS 1.3 suite {suite} is not in Mozilla intermediate")
    summary["protocols"] = protocols
    summary["suites"] = suites
    for label in protocols:
        if label not in ("TLS 1.2", "TLS 1.3"):
            failures.append(f"protocols: {label} is accepted")

    curves = sorted(c.name for c in (scan.elliptic_curves.result.supported_curves or []))
    summary["curves"] = curves
    # sslyze names P-256 "prime256v1" in ephemeral keys and "secp256r1" in the curve list.
    allowed_curves = set(mozilla.tls_curves) | {"prime256v1"}
    for curve in curves:
        if curve not in allowed_curves:
            failures.append(f"curves: {curve} is accepted")

    deployments = scan.certificate_info.result.certificate_deployments
    certificates = []
    for deployment in deployments:
        leaf = deployment.received_certificate_chain[0]
        ours = [r for r in deployment.path_validation_results if Path(r.trust_store.path) == ca]
        valid = bool(ours and ours[0].was_validation_successful)
        lifespan = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
        key = leaf.public_key()
        certificates.append(
            {
                "subject": leaf.subject.rfc4514_string(),
                "issuer": leaf.issuer.rfc4514_string(),
                "not_before": leaf.not_valid_before_utc.isoformat(),
                "not_after": leaf.not_valid_after_utc.isoformat(),
                "lifespan_days": lifespan,
                "key": f"{type(key).__name__.replace('PublicKey', '').replace('_', '')} "
                       f"{getattr(getattr(key, 'curve', None), 'name', '')}".strip(),
                "signature": leaf.signature_algorithm_oid._name,
                "chain_length_sent": len(deployment.received_certificate_chain),
                "chain_order_valid": deployment.received_chain_has_valid_order,
                "valid_against_warden_ca": valid,
                "validation_error": ours[0].validation_error if ours else "Warden's CA was not used",
                "ocsp_stapled": deployment.ocsp_response is not None,
            }
        )
        if not valid:
            failures.append(
                f"chain: {leaf.subject.rfc4514_string()} does not validate against Warden's CA "
                f"for localhost ({certificates[-1]['validation_error']})"
            )
    summary["certificates"] = certificates

    try:
        check_server_against_tls_configuration(result, mozilla)
        issues = {}
    except ServerNotCompliantWithTlsConfiguration as error:
        issues = error.issues
    except ServerScanResultIncomplete as error:
        issues = {"incomplete": str(error)}
    summary["mozilla_issues"] = issues
    for check, message in sorted(issues.items()):
        if check in ACCEPTED and all(
            c["valid_against_warden_ca"] and c["lifespan_days"] <= LONGEST_LIFESPAN_DAYS for c in certificates
        ):
            notes.append(f"accepted deviation `{check}`: {message}")
        else:
            failures.append(f"mozilla: {check}: {message}")

    vulnerabilities = {
        "heartbleed": scan.heartbleed.result.is_vulnerable_to_heartbleed,
        "ccs_injection": scan.openssl_ccs_injection.result.is_vulnerable_to_ccs_injection,
        "robot": scan.robot.result.robot_result.value,
        "compression": scan.tls_compression.result.supports_compression,
        "fallback_scsv": scan.tls_fallback_scsv.result.supports_fallback_scsv,
        "secure_renegotiation": scan.session_renegotiation.result.supports_secure_renegotiation,
        "client_renegotiation_dos": scan.session_renegotiation.result.is_vulnerable_to_client_renegotiation_dos,
        "extended_master_secret": scan.tls_extended_master_secret.result.supports_ems_extension,
    }
    summary["vulnerability_tests"] = vulnerabilities
    if vulnerabilities["client_renegotiation_dos"]:
        failures.append("mozilla: client-initiated renegotiation is accepted (DoS)")

    if name in HTTP:
        attempt = scan.http_headers
        hsts = None
        if attempt.status == ScanCommandAttemptStatusEnum.COMPLETED and attempt.result.strict_transport_security_header:
            header = attempt.result.strict_transport_security_header
            hsts = {"max_age": header.max_age, "include_subdomains": header.include_subdomains,
                    "preload": header.preload}
        summary["hsts"] = hsts
        if name == "https":
            if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED:
                failures.append(f"hsts: the HTTP headers scan did not complete ({attempt.error_reason})")
            elif hsts is None:
                failures.append("hsts: no Strict-Transport-Security header")
            elif (hsts["max_age"] or 0) < mozilla.hsts_min_age:
                failures.append(f"hsts: max-age {hsts['max_age']} is under {mozilla.hsts_min_age}")
    if name == "device" and summary["client_auth"] != "REQUIRED":
        failures.append(f"client-auth: the device listener's client certificate is {summary['client_auth']}")
    if not any(c["ocsp_stapled"] for c in certificates):
        notes.append("no OCSP staple (see below)")
    summary.update(failures=failures, notes=notes)
    return summary


def markdown(listeners: list[dict]) -> str:
    out = []
    for item in listeners:
        verdict = "FAIL" if item["failures"] else "PASS"
        out.append(f"#### {item['listener']} ({item['address']}): {verdict}")
        out.append("")
        if "protocols" in item:
            out.append(f"- Client certificate: {item['client_auth']}")
            refused = [label for _, label in VERSIONS if label not in item["protocols"]]
            out.append(f"- Protocols accepted: {', '.join(item['protocols']) or 'none'}"
                       + (f"; refused with every suite sslyze knows: {', '.join(refused)}" if refused else ""))
            for label, suites in item["suites"].items():
                out.append(f"- {label} suites: {', '.join(suites)}")
            out.append(f"- Key-exchange groups: {', '.join(item['curves'])}")
            for cert in item["certificates"]:
                out.append(
                    f"- Certificate: {cert['subject']} from {cert['issuer']}, {cert['key']}, "
                    f"{cert['signature']}, {cert['not_before'][:10]} to {cert['not_after'][:10]} "
                    f"({cert['lifespan_days']} days), {cert['chain_length_sent']} sent, "
                    f"order {'valid' if cert['chain_order_valid'] else 'INVALID'}, "
                    f"{'valid against Warden CA for localhost' if cert['valid_against_warden_ca'] else 'NOT valid: ' + str(cert['validation_error'])}"
                )
            vulnerabilities = item["vulnerability_tests"]
            out.append(
                "- Attacks: Heartbleed {}, CCS injection {}, ROBOT {}, compression {}, "
                "fallback SCSV {}, secure renegotiation {}, client renegotiation {}, "
                "extended master secret {}".format(
                    "vulnerable" if vulnerabilities["heartbleed"] else "not vulnerable",
                    "vulnerable" if vulnerabilities["ccs_injection"] else "not vulnerable",
                    vulnerabilities["robot"],
                    "on" if vulnerabilities["compression"] else "off",
                    "supported" if vulnerabilities["fallback_scsv"] else "NOT supported",
                    "supported" if vulnerabilities["secure_renegotiation"] else "NOT supported",
                    "ACCEPTED" if vulnerabilities["client_renegotiation_dos"] else "refused",
                    "supported" if vulnerabilities["extended_master_secret"] else "NOT supported",
                )
            )
            if "hsts" in item:
                hsts = item["hsts"]
                out.append(
                    "- HSTS: " + (f"max-age={hsts['max_age']}"
                                  + ("; includeSubDomains" if hsts["include_subdomains"] else "")
                                  + ("; preload" if hsts["preload"] else "")
                                  if hsts else "absent")
                )
            issues = item["mozilla_issues"]
            out.append("- sslyze Mozilla intermediate checker: "
                       + ("compliant" if not issues else
                          "; ".join(f"`{k}`: {v}" for k, v in sorted(issues.items()))))
        for failure in item["failures"]:
            out.append(f"- **FAIL** {failure}")
        for note in item["notes"]:
            out.append(f"- Note: {note}")
        out.append("")
    accepted = sorted({n.split("`")[1] for i in listeners for n in i["notes"] if n.startswith("accepted")})
    if accepted or any(n.startswith("no OCSP") for i in listeners for n in i["notes"]):
        out += ["Why these notes do not fail the check:", ""]
        for check in accepted:
            out.append(f"- `{check}`: {ACCEPTED[check]}")
        if any(n.startswith("no OCSP") for i in listeners for n in i["notes"]):
            out.append(f"- no OCSP staple: {NO_OCSP}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", required=True, help="DATA_DIR/addresses.json")
    parser.add_argument("--ca", required=True, help="DATA_DIR/tls/ca.crt")
    parser.add_argument("--client-cert", required=True)
    parser.add_argument("--client-key", required=True)
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--sslyze-json", required=True, help="sslyze's own full JSON output")
    args = parser.parse_args()
    started = time.monotonic()

    ca = Path(args.ca).resolve()
    announced = json.loads(Path(args.addresses).read_text())
    credentials = ClientAuthenticationCredentials(
        certificate_chain_path=Path(args.client_cert), key_path=Path(args.client_key)
    )
    mozilla = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    requests = []
    skipped = []
    for name, address in sorted(announced.items()):
        if name in PLAIN:
            skipped.append(f"{name} ({address}) is not a TLS listener")
            continue
        if name == "device":
            # With the client certificate: everything but SSL 2.0, which nassl's legacy OpenSSL
            # cannot offer with an ECDSA client certificate loaded (SSL 2.0 knows only RSA).
            # Without one: SSL 2.0 alone. A server that spoke SSL 2.0 would answer the hello
            # before it asked for a certificate, and sslyze counts that as accepted, so the
            # probe is as conclusive as with one.
            full = request_for(name, address, ca, credentials)
            requests.append(
                request_for(name, address, ca, credentials,
                            set(full.scan_commands) - {ScanCommand.SSL_2_0_CIPHER_SUITES})
            )
            requests.append(request_for(name, address, ca, None, {ScanCommand.SSL_2_0_CIPHER_SUITES}))
        else:
            requests.append(request_for(name, address, ca, None))
    by_port = {split(address)[1]: name for name, address in announced.items()}

    scans_started = datetime.now(timezone.utc)
    scanner = Scanner()
    scanner.queue_scans(requests)
    results = list(scanner.get_results())
    scans_completed = datetime.now(timezone.utc)
    Path(args.sslyze_json).write_text(
        SslyzeOutputAsJson(
            invalid_server_strings=[],
            server_scan_results=[ServerScanResultAsJson.model_validate(r) for r in results],
            date_scans_started=scans_started,
            date_scans_completed=scans_completed,
        ).model_dump_json(indent=2)
    )

    # One result per listener; the device listener's two scans are put together: SSL 2.0 from
    # the scan without a certificate, which also tells whether the listener requires one.
    merged = {}
    bare = {}
    client_auth = {}
    for result in results:
        name = by_port[result.server_location.port]
        if name == "device" and result.network_configuration.tls_client_auth_credentials is None:
            bare[name] = result
            if result.connectivity_result is not None:
                client_auth[name] = result.connectivity_result.client_auth_requirement.value
        else:
            merged[name] = result
    for name, result in bare.items():
        if name in merged and merged[name].scan_result and result.scan_result:
            merged[name] = dataclasses.replace(
                merged[name],
                scan_result=dataclasses.replace(
                    merged[name].scan_result,
                    ssl_2_0_cipher_suites=result.scan_result.ssl_2_0_cipher_suites,
                ),
            )
    order = ["https", "device", "mqtt", "mqtt_websocket"]
    judged = [
        judge(name, merged[name], ca, mozilla, client_auth.get(name))
        for name in sorted(merged, key=lambda n: (order.index(n) if n in order else 9, n))
    ]

    failed = [item for item in judged if item["failures"]]
    versions = sorted({p for item in judged for p in item.get("protocols", [])})
    suites = sorted({s.split(" ")[0] for item in judged for v in item.get("suites", {}).values() for s in v})
    cipher_failures = any(f.startswith("ciphers") for i in judged for f in i["failures"])
    figures = (
        f"{len(judged)} listeners ({', '.join(i['listener'] for i in judged)}), "
        f"{len(judged) - len(failed)} pass; protocols {'/'.join(versions) or 'none'}; "
        f"{len(suites)} distinct suites"
        + (", all ECDHE or TLS 1.3 with AEAD" if suites and not cipher_failures else "")
    )
    accepted = sorted({n.split("`")[1] for i in judged for n in i["notes"] if n.startswith("accepted")})
    if accepted:
        figures += f"; accepted deviations: {', '.join(accepted)}"
    details = [
        "Scanner: sslyze " + __import__("sslyze").__version__.__version__
        + f", Mozilla TLS profile {mozilla_version()} intermediate, trust store {args.ca}.",
        "",
        *([f"Not scanned: {', '.join(skipped)}.", ""] if skipped else []),
        markdown(judged),
    ]
    result = {
        "name": "TLS scan (sslyze, Mozilla intermediate)",
        "status": "FAIL" if failed or not judged else "PASS",
        "figures": figures,
        "details": "\n".join(details),
        "seconds": time.monotonic() - started,
        "listeners": judged,
    }
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"{result['status']}: {figures}")


def mozilla_version() -> str:
    profile = Path(__import__("sslyze").mozilla_tls_profile.__file__).parent / "5.7.json"
    return str(json.loads(profile.read_text()).get("version", "?"))


if __name__ == "__main__":
    main()
