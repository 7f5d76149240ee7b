"""The callers scripts/harden fuzzes and scans as: an admin person, a service, a device, a part.

`setup` makes them on a running Warden, the way an operator and a person would:
- an administrator: signs up on /signup, is made an admin with `warden admin users set-role`, logs
  in on /login (the HTML form, CSRF token and all) and gets an access token from the
  authorization code flow with PKCE (S256) as the first-party public client `warden-cli`, whose
  loopback redirect URI matches any port; the redirect is read from the Location header, so
  nothing needs to listen there;
- a service: a confidential client from `warden admin clients create`, tokens from the
  client-credentials grant;
- two devices: factory bundles from `warden admin device create` (certificate, key, MQTT
  password, claim code); the admin claims the first over the API, the second stays unclaimed;
- a part: a workload certificate from `warden admin certs issue-workload --part scanner`, which
  sslyze presents on the mutual-TLS device listener.

`token KIND` prints a fresh access token for `admin` or `service` from what `setup` saved, so
every fuzzing run starts with a token that has its whole lifetime ahead.
"""

import argparse
import base64
import hashlib
import html
import json
import re
import secrets
import subprocess
import sys
import urllib.parse
from pathlib import Path

import requests

ADMIN_SCOPES = (
    "openid email devices:read devices:write devices:command devices:manage "
    "firmware:manage admin"
)
# Everything a service may ask for that the API's operations name; `admin` is for people with
# the admin role only, so a service does not get it.
SERVICE_SCOPES = "devices:read devices:write devices:command devices:manage firmware:manage authz:check"
CLI_CLIENT = "warden-cli"
# Any port matches the client's registered loopback redirect; nobody listens on it.
REDIRECT_URI = "http://127.0.0.1:9/callback"


def hidden_field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    if not match:
        raise SystemExit(f"no hidden field {name!r} in the page:\n{page[:2000]}")
    return html.unescape(match.group(1))


def warden(state: dict, *args: str) -> str:
    command = [state["warden"], "admin", "--data-dir", state["data_dir"], *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def session(state: dict) -> requests.Session:
    browser = requests.Session()
    # Otherwise REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE in the environment would replace Warden's CA.
    browser.trust_env = False
    browser.verify = state["ca"]
    return browser


def sign_up(state: dict, email: str, password: str) -> None:
    browser = session(state)
    page = browser.get(f"{state['base']}/signup", timeout=30)
    page.raise_for_status()
    answer = browser.post(
        f"{state['base']}/signup",
        data={"csrf": hidden_field(page.text, "csrf"), "email": email, "password": password},
        allow_redirects=False,
        timeout=60,
    )
    if answer.status_code not in (200, 303, 302):
        raise SystemExit(f"sign-up answered {answer.status_code}: {answer.text[:500]}")


def admin_token(state: dict) -> dict:
    """Logs the admin in on a fresh session and runs the authorization code flow with PKCE."""
    browser = session(state)
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    oauth_state = secrets.token_urlsafe(16)
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": CLI_CLIENT,
            "redirect_uri": REDIRECT_URI,
            "scope": ADMIN_SCOPES,
            "state": oauth_state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    first = browser.get(f"{state['base']}/oauth2/authorize?{query}", allow_redirects=False, timeout=30)
    location = first.headers.get("location", "")
    answer = first
    if location.startswith("/login"):
        login_page = browser.get(f"{state['base']}{location}", timeout=30)
        login_page.raise_for_status()
        logged_in = browser.post(
            f"{state['base']}/login",
            data={
                "csrf": hidden_field(login_page.text, "csrf"),
                "next": hidden_field(login_page.text, "next"),
                "email": state["admin_email"],
                "password": state["admin_password"],
            },
            allow_redirects=False,
            timeout=60,
        )
        if logged_in.status_code not in (302, 303):
            raise SystemExit(f"login answered {logged_in.status_code}: {logged_in.text[:500]}")
        next_url = urllib.parse.urljoin(state["base"] + "/", logged_in.headers["location"])
        answer = browser.get(next_url, allow_redirects=False, timeout=30)
        location = answer.headers.get("location", "")
    if not location.startswith(REDIRECT_URI):
        raise SystemExit(
            f"the authorization endpoint answered {answer.status_code} instead of sending the "
            f"browser back with a code: {location!r} {answer.text[:300]!r}"
        )
    params = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    if params.get("state") != [oauth_state] or "code" not in params:
        raise SystemExit(f"the redirect carries no code or a wrong state: {location!r}")
    tokens = browser.post(
        f"{state['base']}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT_URI,
            "client_id": CLI_CLIENT,
            "code_verifier": verifier,
        },
        timeout=30,
    )
    if tokens.status_code != 200:
        raise SystemExit(f"the token endpoint answered {tokens.status_code}: {tokens.text[:500]}")
    return tokens.json()


def service_token(state: dict) -> dict:
    tokens = session(state).post(
        f"{state['base']}/oauth2/token",
        data={"grant_type": "client_credentials", "scope": SERVICE_SCOPES},
        auth=(state["service_client_id"], state["service_client_secret"]),
        timeout=30,
    )
    if tokens.status_code != 200:
        raise SystemExit(f"client credentials answered {tokens.status_code}: {tokens.text[:500]}")
    return tokens.json()


def granted_scopes(token: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims.get("scope", "")


def setup(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    addresses = json.loads((Path(args.data_dir) / "addresses.json").read_text())
    state = {
        "warden": args.warden,
        "data_dir": args.data_dir,
        "ca": str(Path(args.data_dir) / "tls" / "ca.crt"),
        # The certificate names localhost; the listener is on 127.0.0.1.
        "base": f"https://localhost:{addresses['https'].rsplit(':', 1)[1]}",
        "admin_email": f"harden-admin-{secrets.token_hex(4)}@example.com",
        "admin_password": secrets.token_urlsafe(24),
    }
    sign_up(state, state["admin_email"], state["admin_password"])
    warden(state, "users", "set-role", state["admin_email"], "admin")

    created = warden(
        state, "clients", "create", "--name", "harden-service", "--scope", SERVICE_SCOPES
    )
    fields = dict(
        line.split(":", 1) for line in created.splitlines() if re.match(r"^client_(id|secret):", line)
    )
    state["service_client_id"] = fields["client_id"].strip()
    state["service_client_secret"] = fields["client_secret"].strip()

    # Two devices: the admin claims the first, which also speaks for itself on the device
    # listener; the second stays unclaimed. The fuzzer puts their ids into paths.
    devices = work / "devices"
    warden(state, "device", "create", "--model", "harden-scan", "--count", "2", "--out", str(devices))
    bundles = [
        json.loads((path / "device.json").read_text()) | {"dir": str(path)}
        for path in sorted(devices.iterdir())
        if (path / "device.json").is_file()
    ]
    device = bundles[0]
    state["devices"] = [bundle["device_id"] for bundle in bundles]
    state["device_id"] = device["device_id"]
    state["device_password"] = device["mqtt_password"]
    state["device_cert"] = str(Path(device["dir"]) / device["certificate"])
    state["device_key"] = str(Path(device["dir"]) / device["private_key"])

    workload = work / "scanner"
    warden(state, "certs", "issue-workload", "--part", "scanner", "--hours", "4", "--out", str(workload))
    state["scanner_cert"] = str(workload / "scanner.crt")
    state["scanner_key"] = str(workload / "scanner.key")

    # Prove both logins work now, so a broken login fails here with its reason, not later as a
    # fuzzing run full of 401s.
    admin_access = admin_token(state)["access_token"]
    state["admin_scopes_granted"] = granted_scopes(admin_access)
    claimed = session(state).post(
        f"{state['base']}/api/v1/devices/claim",
        json={"device_id": device["device_id"], "claim_code": device["claim_code"]},
        headers={"Authorization": f"Bearer {admin_access}"},
        timeout=30,
    )
    if claimed.status_code != 200:
        raise SystemExit(f"claiming {device['device_id']} answered {claimed.status_code}: {claimed.text[:500]}")
    state["service_scopes_granted"] = granted_scopes(service_token(state)["access_token"])
    (work / "identities.json").write_text(json.dumps(state, indent=2))
    (work / "identities.json").chmod(0o600)
    print(f"admin {state['admin_email']} ({state['admin_scopes_granted']}); "
          f"service {state['service_client_id']} ({state['service_scopes_granted']}); "
          f"device {state['device_id']}")


def token(args: argparse.Namespace) -> None:
    state = json.loads((Path(args.work) / "identities.json").read_text())
    tokens = admin_token(state) if args.kind == "admin" else service_token(state)
    print(tokens["access_token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("setup")
    make.add_argument("--warden", required=True)
    make.add_argument("--data-dir", required=True)
    make.add_argument("--work", required=True)
    fresh = commands.add_parser("token")
    fresh.add_argument("--work", required=True)
    fresh.add_argument("kind", choices=["admin", "service"])
    args = parser.parse_args()
    {"setup": setup, "token": token}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
