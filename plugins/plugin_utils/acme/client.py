# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ACME protocol through community.crypto's client, in the controller's own process. Private to this collection.

community.crypto's ACME code expects an ``AnsibleModule``: it reads its options from ``params``, reports through
``warn``/``log`` and ends with ``fail_json``. ``AcmeModuleShim`` is that object for code that is not a module: its
``fail_json`` raises, its ``log`` enforces the run's retry budget, and nothing it is given is written anywhere.
This is the one file that imports community.crypto (whose module_utils are private to it since 3.0.0: the tested
versions are pinned in galaxy.yml and checked by tests/unit/acme/test_client.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.acme.settings import AcmeSettings
from ansible_collections.xtractuniversal.tls.plugins.plugin_utils.host._errors import XuError

try:
    from ansible_collections.community.crypto.plugins.module_utils._acme.account import ACMEAccount
    from ansible_collections.community.crypto.plugins.module_utils._acme.acme import ACMEClient, create_backend
    from ansible_collections.community.crypto.plugins.module_utils._acme.certificates import CertificateChain
    from ansible_collections.community.crypto.plugins.module_utils._acme.challenges import Authorization
    from ansible_collections.community.crypto.plugins.module_utils._acme.errors import ModuleFailException
    from ansible_collections.community.crypto.plugins.module_utils._acme.orders import Order
    from ansible_collections.community.crypto.plugins.module_utils._acme.utils import compute_cert_id, parse_retry_after
except ImportError as e:  # reported as a clear failure by open_session
    COMMUNITY_CRYPTO_IMPORT_ERROR: ImportError | None = e
else:
    COMMUNITY_CRYPTO_IMPORT_ERROR = None

T = TypeVar("T")
ACME_ERROR_PREFIX = "urn:ietf:params:acme:error:"
# Errors after which the same request may simply be sent again (RFC 8555 6.7; rateLimited with its Retry-After).
RETRYABLE_PROBLEMS = frozenset({"badNonce", "rateLimited", "serverInternal"})
# community.crypto logs each retry it makes itself (a refused connection, 408, 429, 502-504) before it sleeps.
_RETRY_NOTICE = re.compile(r"Retrieved an? (?P<status>-?\d+)\b.*retrying in (?P<seconds>\d+(?:\.\d+)?) seconds")


class AcmeError(XuError):
    """An ACME step that failed; ``step`` names it, ``problem`` is the CA's error type without its URN prefix."""

    def __init__(self, msg: str, *, step: str, problem: str = "", retry_after: float | None = None) -> None:
        super().__init__(msg, acme_step=step, acme_problem=problem or None)
        self.step = step
        self.problem = problem
        self.retry_after = retry_after


@dataclass
class RetryBudget:
    """How long one host's issuance may spend waiting on a CA that says "later" (or does not answer at all)."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def allows(self, wait: float) -> bool:
        return self.clock() + wait <= self.deadline


class AcmeModuleShim:
    """What community.crypto's ACME code uses of ``AnsibleModule``, for a controller-side caller."""

    def __init__(self, params: dict[str, Any], *, check_mode: bool, budget: RetryBudget, notes: list[str]) -> None:
        self.params = params
        self.check_mode = check_mode
        self.tmpdir = tempfile.gettempdir()
        self._budget = budget
        self._notes = notes
        self.step = "connect"

    def set_step(self, step: str) -> None:
        self.step = step

    def fail_json(self, msg: str = "", **_kwargs: Any) -> NoReturn:
        # fetch_url calls this for a URL it cannot even try (a malformed one); the keyword arguments are not echoed.
        raise AcmeError(f"ACME request failed: {msg}", step=self.step)

    def warn(self, message: str) -> None:
        self._notes.append(message)

    def debug(self, message: str) -> None:
        del message

    def log(self, message: str) -> None:
        """community.crypto's notice of a retry it is about to sleep for: stop when the budget cannot pay for it."""
        notice = _RETRY_NOTICE.search(message)
        if notice is None:
            return
        seconds, status = float(notice.group("seconds")), int(notice.group("status"))
        if not self._budget.allows(seconds):
            if status == 429:
                raise AcmeError(
                    f"The CA keeps answering 429 (rate limited) in step {self.step}; stopped after xu_renew_acme_retry_budget"
                    f" ({self._budget.seconds:g} s). Try again later",
                    step=self.step,
                    problem="rateLimited",
                )
            what = (
                "could not be reached (refused, timed out, or its HTTPS certificate is not trusted: xu_renew_acme_ca_path)"
                if status < 0
                else f"kept answering HTTP {status}"
            )
            raise AcmeError(
                f"The CA {what} in step {self.step}; stopped after xu_renew_acme_retry_budget ({self._budget.seconds:g} s)",
                step=self.step,
                problem="unavailable",
            )
        self._notes.append(f"{self.step}: the CA answered {status}, retrying in {seconds:g} s")

    def jsonify(self, data: Any) -> str:
        return json.dumps(data)

    def from_json(self, data: str) -> Any:
        return json.loads(data)

    def run_command(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise AcmeError("community.crypto's OpenSSL backend is not used here; install cryptography", step=self.step)

    def get_bin_path(self, *_args: Any, **_kwargs: Any) -> None:
        return None


@contextlib.contextmanager
def trusting(ca_path: str) -> Iterator[None]:
    """Trust ``ca_path`` too for the CA's HTTPS, for the duration of the block.

    community.crypto does not pass a CA bundle to Ansible's ``fetch_url``, which trusts the system's store and what
    ``SSL_CERT_FILE`` names; that variable is set in this process (a fork of Ansible's, for one task) and restored.
    """
    if not ca_path:
        yield
        return
    if not os.path.isfile(ca_path):
        raise AcmeError(f"xu_renew_acme_ca_path {ca_path} is not a file", step="connect")
    previous = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = ca_path
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = previous


def problem_of(error: BaseException) -> str:
    kind = str(getattr(error, "error_type", "") or "")
    return kind[len(ACME_ERROR_PREFIX) :] if kind.startswith(ACME_ERROR_PREFIX) else kind


def _message(error: BaseException) -> str:
    return str(getattr(error, "msg", "") or error)


@dataclass
class AcmeSession:
    """One account at one CA, for one process: the client, the account's URL and what the directory offers."""

    module: AcmeModuleShim
    client: Any
    account_uri: str
    created: bool
    budget: RetryBudget
    notes: list[str]
    ca_path: str = ""
    sleep: Callable[[float], None] = time.sleep

    @property
    def has_ari(self) -> bool:
        return bool(self.client.directory.has_renewal_info_endpoint())

    @property
    def terms_of_service(self) -> str:
        return str(self.client.directory.get("meta", {}).get("termsOfService") or "")

    def step(self, name: str, action: Callable[[], T], *, retry: bool = True) -> T:
        """Run one ACME request under ``name``: community.crypto's errors become AcmeError, transient ones are retried.

        A badNonce past community.crypto's own retries, a rateLimited or serverInternal answer is tried again after an
        exponential backoff with jitter, while the retry budget lasts.
        """
        attempt = 0
        while True:
            self.module.set_step(name)
            try:
                with trusting(self.ca_path):
                    return action()
            except AcmeError:
                raise
            except ModuleFailException as error:
                problem = problem_of(error)
                wait = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret
                if retry and problem in RETRYABLE_PROBLEMS and self.budget.allows(wait):
                    attempt += 1
                    self.notes.append(f"{name}: the CA answered {problem}, attempt {attempt + 1} in {wait:.1f} s")
                    self.sleep(wait)
                    continue
                suffix = " (retries exhausted)" if problem in RETRYABLE_PROBLEMS else ""
                raise AcmeError(f"ACME step {name} failed{suffix}: {_message(error)}", step=name, problem=problem) from None

    def get(self, url: str) -> tuple[dict[str, Any], float | None]:
        """A POST-as-GET of an ACME object, and the Retry-After it came with (seconds, None without one)."""
        data, info = self.client.get_request(url)
        if not isinstance(data, dict):
            raise AcmeError(f"The CA answered {url} with something that is not an ACME object", step=self.module.step)
        retry_after = None
        if info.get("retry-after"):
            try:
                then = parse_retry_after(str(info["retry-after"]), relative_with_timezone=True)
                now = then.now(then.tzinfo) if then.tzinfo else then.now()
                retry_after = max(0.0, (then - now).total_seconds())
            except ValueError:
                retry_after = None
        return data, retry_after


def _params(settings: AcmeSettings) -> dict[str, Any]:
    return {
        "acme_directory": settings.directory,
        "acme_version": 2,
        "validate_certs": True,
        "select_crypto_backend": "cryptography",
        "request_timeout": settings.request_timeout,
        "account_key_src": None,
        "account_key_content": settings.account_key.reveal(),
        "account_key_passphrase": settings.account_key_passphrase.reveal() or None,
        "account_uri": settings.account_uri or None,
    }


def open_session(settings: AcmeSettings, *, check_mode: bool, budget: RetryBudget | None = None, allow_creation: bool = True) -> AcmeSession:
    """The directory read and the account found (or created, unless in check mode).

    One account for the whole run: every host signs with the same key; a host's process finds the account by its key
    (RFC 8555 7.3.1), so a new key creates one account once, the first time.
    """
    if COMMUNITY_CRYPTO_IMPORT_ERROR is not None:
        raise AcmeError(
            "ACME issuance needs the collection community.crypto 3.x on the controller"
            f" (ansible-galaxy collection install community.crypto, or the ansible package): {COMMUNITY_CRYPTO_IMPORT_ERROR}",
            step="connect",
        )
    budget = budget or RetryBudget(settings.retry_budget)
    notes: list[str] = []
    module = AcmeModuleShim(_params(settings), check_mode=check_mode, budget=budget, notes=notes)
    with trusting(settings.ca_path):
        try:
            backend = create_backend(module, needs_acme_v2=True)
            client = ACMEClient(module=module, backend=backend)
        except AcmeError:
            raise
        except ModuleFailException as error:
            raise AcmeError(f"Cannot use the ACME directory {settings.directory}: {_message(error)}", step="connect", problem=problem_of(error)) from None
        session = AcmeSession(module=module, client=client, account_uri="", created=False, budget=budget, notes=notes, ca_path=settings.ca_path)
        eab = None
        if settings.eab_kid:
            eab = {"kid": settings.eab_kid, "alg": settings.eab_algorithm, "key": settings.eab_hmac_key.reveal()}
        account = ACMEAccount(client=client)
        created, data = session.step(
            "account",
            lambda: account.setup_account(
                contact=list(settings.contact),
                terms_agreed=settings.terms_agreed,
                allow_creation=allow_creation,
                external_account_binding=eab,
            ),
        )
        if not check_mode and (data is None or client.account_uri is None):
            raise AcmeError(
                f"No ACME account exists at {settings.directory} for this account key, and none was created", step="account"
            )
        session.account_uri = str(client.account_uri or "")
        session.created = bool(created)
    return session


def cert_id_of(session: AcmeSession, certificate_pem: str) -> str | None:
    """The certificate's ARI identifier (RFC 9773 4.1), None when it has no Authority Key Identifier."""
    cert_id = compute_cert_id(backend=session.client.backend, cert_content=certificate_pem, none_if_required_information_is_missing=True)
    return str(cert_id) if cert_id else None


def renewal_info(session: AcmeSession, cert_id: str) -> tuple[dict[str, Any], float | None]:
    """The CA's renewal information for a certificate (RFC 9773 4.2), and its Retry-After in seconds."""
    data = session.step("renewal_info", lambda: session.client.get_renewal_info(cert_id=cert_id, include_retry_after=True))
    retry_after = None
    moment = data.pop("retryAfter", None)
    if moment is not None:
        retry_after = max(0.0, (moment - moment.now(moment.tzinfo)).total_seconds())
    return dict(data), retry_after


def create_order(session: AcmeSession, names: tuple[str, ...], replaces: str | None) -> Any:
    notes = session.notes
    return session.step(
        "order",
        lambda: Order.create_with_error_handling(
            client=session.client,
            identifiers=[("dns", name) for name in names],
            error_strategy="auto",
            error_max_retries=1,
            replaces_cert_id=replaces,
            message_callback=notes.append,
        ),
    )


def order_from(session: AcmeSession, url: str, data: dict[str, Any]) -> Any:
    return Order.from_json(client=session.client, data=data, url=url)


def authorization_from(session: AcmeSession, url: str, data: dict[str, Any]) -> Any:
    return Authorization.from_json(client=session.client, data=data, url=url)


def dns01_record(session: AcmeSession, authorization: Any) -> tuple[str, str, str] | None:
    """The identifier, the record name and the value that answer the authorization's dns-01 challenge."""
    data = authorization.get_challenge_data(client=session.client).get("dns-01")
    if not data:
        return None
    return str(authorization.identifier), str(data["record"]), str(data["resource_value"])


def answer_challenge(session: AcmeSession, authorization: Any) -> None:
    challenge = authorization.find_challenge(challenge_type="dns-01")
    if challenge is None:
        raise AcmeError(f"The CA offers no dns-01 challenge for {authorization.identifier}", step="validate")
    session.step("validate", lambda: challenge.call_validate(session.client))


def deactivate(session: AcmeSession, authorization: Any) -> bool:
    """Deactivate a pending authorization, so that the CA stops validating it; False when it would not."""
    try:
        return bool(session.step("deactivate", lambda: authorization.deactivate(client=session.client), retry=False))
    except AcmeError:
        return False


def finalize(session: AcmeSession, order: Any, csr_der: bytes) -> None:
    session.step("finalize", lambda: order.finalize(client=session.client, csr_der=csr_der, wait=False))


def download_chain(session: AcmeSession, url: str) -> list[str]:
    """The certificate and its chain as PEM texts, leaf first."""
    chain = session.step("download", lambda: CertificateChain.download(client=session.client, url=url))
    return [str(chain.cert), *(str(item) for item in chain.chain)]
