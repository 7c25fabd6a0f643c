"""Configuration, from `ALLIANCE_*` environment variables (and a `.env` file if present).

Defaults are the embedded local set-up: the Temporal dev server on 127.0.0.1:7233 and the Kafka broker on
127.0.0.1:19092, both started by `deploy/local/services.sh`.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from activities.screening import EligibilityRules
from schemas.timetable import Timetable

STATE = Path(__file__).resolve().parents[1] / ".state"
PARTNER_COUNTRIES = ["TH", "BD", "MY", "NG", "ET", "TN", "TZ", "ZM", "KE", "PK", "EG", "KZ", "ID", "LA", "KH"]

# USD per one unit of each currency. Reference rates for the local set-up; production reads its treasury's.
DEFAULT_RATES = {
    "USD": "1",
    "EUR": "1.08",
    "GBP": "1.27",
    "CNY": "0.138",
    "JPY": "0.0067",
    "THB": "0.028",
    "BDT": "0.0083",
    "MYR": "0.22",
    "NGN": "0.00065",
    "ETB": "0.0078",
    "TND": "0.32",
    "TZS": "0.00038",
    "ZMW": "0.037",
    "KES": "0.0077",
    "PKR": "0.0036",
    "EGP": "0.02",
    "KZT": "0.002",
    "IDR": "0.000063",
    "LAK": "0.000046",
    "KHR": "0.00024",
}


ENV_PREFIX = "ALLIANCE_"


class SettingError(Exception):
    """A configuration mistake, as one line that names the variable and what it accepts."""

    @classmethod
    def of(cls, err: ValidationError) -> SettingError:
        problems = []
        for e in err.errors():
            name = str(e["loc"][0]) if e.get("loc") else ""
            field = Settings.model_fields.get(name)
            variable = f"{ENV_PREFIX}{name.upper()}" if name else "settings"
            value = e.get("input")
            shown = f"={value!r}" if isinstance(value, str | int | float) else ""
            accepts = f" ({field.description})" if field and field.description else ""
            message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{variable}{shown}: {message}{accepts}")
        return cls("; ".join(problems))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_unset(cls, data: Any) -> Any:
        """`ALLIANCE_METRICS_PORT=` (empty) means none for a setting that may be none, and the default for others."""
        if not isinstance(data, dict):
            return data
        cleaned: dict[str, Any] = {}
        for key, value in data.items():
            field = cls.model_fields.get(key)
            if value == "" and field is not None and not field.is_required():
                if type(None) in get_args(field.annotation):
                    cleaned[key] = None
                continue  # the default
            cleaned[key] = value
        return cleaned

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "alliance-projects"
    temporal_api_key: SecretStr | None = Field(default=None, description="Temporal Cloud API key")
    temporal_tls: bool = Field(default=False, description="TLS to the frontend (implied by an API key)")
    temporal_tls_cert: Path | None = Field(default=None, description="Client certificate for mTLS")
    temporal_tls_key: Path | None = Field(default=None, description="Client private key for mTLS")
    temporal_tls_ca: Path | None = Field(default=None, description="CA bundle of a self-hosted cluster")

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    status_topic: str = "alliance.project-status.v1"
    instruction_topic: str = "alliance.institution-instructions.v1"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    # Stream worker (streams/app.py)
    feed_topic: str = "alliance.project-feed.v1"
    snapshot_topic: str = "alliance.portfolio-snapshots.v1"
    alert_topic: str = "alliance.alerts.v1"
    dead_letter_topic: str = "alliance.status-dead-letters.v1"
    streams_app_id: str = "alliance-streams"
    streams_web_host: str = "127.0.0.1"
    streams_web_port: int = 6066
    streams_data_dir: Path = STATE / "streams"
    streams_snapshot_seconds: float = Field(default=10, gt=0)
    streams_warn_days: int = Field(default=5, ge=0, description="Alert this many days before a review deadline")
    streams_stalled_days: int = Field(default=60, ge=1, description="Alert when a project stays this long in a stage")
    streams_session_timeout_seconds: float = Field(
        default=30, ge=6, description="How long the group waits for a silent stream worker before its partitions move"
    )
    streams_fetch_wait_ms: int = Field(
        default=100,
        ge=1,
        le=1500,
        description="The longest the stream worker's consumer lets the broker hold a fetch with nothing to return "
        "(streams/transport.py; faust's own is 1,500 ms, which shows up as publish-to-view lag)",
    )
    streams_recovery_patience_seconds: float = Field(
        default=60,
        gt=0,
        description="How long a table recovery may read no changelog record before the stream worker exits "
        "with status 75, for its supervisor to start it again (streams/recovery.py)",
    )

    # The project timetable given to every new project
    review_days: int = 30
    reminder_days_before: int = 5
    effectiveness_days: int = 180
    warranty_months: int = 12
    milestone_reminder_days: int = Field(default=30, ge=0, description="Remind of an awaited milestone (0: never)")
    # A task that rebuilds its run (after a status read evicted it, a restart, a full cache) replays the history: about
    # 1 ms of CPU per event here (docs/performance.md, "Workflow cache"); 1,000 keeps such a task near a second, far
    # from the 10 s workflow task timeout.
    continue_as_new_after_events: int = Field(
        default=1_000, ge=100, description="A project's history length at which it continues as new"
    )

    # Screening
    partner_countries: list[str] = Field(default_factory=lambda: list(PARTNER_COUNTRIES))
    fx_usd_per_unit: dict[str, Decimal] = Field(
        default_factory=lambda: {k: Decimal(v) for k, v in DEFAULT_RATES.items()}
    )
    fx_rate_date: date = date(2026, 11, 2)

    # Identities: bearer tokens for callers, attestations for the workflow (see alliance/tokens.py)
    signing_key_file: Path = Field(default=STATE / "keys" / "edge-ed25519.pem", description="Created if missing")
    token_public_keys_file: Path | None = Field(
        default=None, description="The token issuer's public keys: a JWKS document or PEM keys (see alliance/tokens.py)"
    )
    token_issuer: str = "alliance-local"
    token_audience: str = "alliance-api"
    token_leeway_seconds: int = Field(
        default=60, ge=0, le=600, description="Clock difference allowed when checking a token's exp, nbf and iat"
    )
    attestation_seconds: int = Field(default=300, ge=10, le=3600)

    # Decisions: how long an edge waits for a worker to answer a decision (or a status read) before it says so
    decision_wait_seconds: float = Field(
        default=30, gt=0, le=600, description="Bounded wait for a decision's outcome (CLI --wait, API Prefer: wait=N)"
    )

    # Worker: workflow runs kept between tasks; a run that answered a query outside a task is evicted after it
    # (alliance/query_isolation.py), so the cache is safe with temporalio 1.35.0's query run-ahead
    workflow_cache: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="Workflow runs a worker keeps between workflow tasks (max_cached_workflows; 0 replays every "
        "task's whole history); about 0.5 MiB each",
    )

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535, description="A TCP port, 1-65535")

    # Worker Versioning: every worker declares its build id (the package version and git revision unless set)
    build_id: str | None = Field(default=None, description="Overrides the build id derived from version and revision")
    deployment_name: str = Field(default="alliance-workers", description="Temporal Worker Deployment name")
    worker_versioning: bool = Field(
        default=False,
        description="Route tasks by Worker Deployment version (then make each new version current with "
        "`temporal worker deployment set-current-version`)",
    )

    # Metrics: the worker serves /metrics here (the API and the stream worker serve it on their own ports)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(
        default=9464, ge=1, le=65535, description="A TCP port (1-65535) for the worker's /metrics; empty for none"
    )

    # Tracing (OpenTelemetry): off unless switched on
    tracing: Literal["off", "otlp", "console"] = "off"
    otlp_endpoint: str = Field(default="http://127.0.0.1:4318/v1/traces", description="OTLP/HTTP traces endpoint")

    # Logs
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    def timetable(self) -> Timetable:
        return Timetable(
            review_days=self.review_days,
            reminder_days_before=self.reminder_days_before,
            effectiveness_days=self.effectiveness_days,
            warranty_months=self.warranty_months,
            milestone_reminder_days=self.milestone_reminder_days,
        )

    @property
    def views_changelog_topic(self) -> str:
        """The changelog faust keeps for the stream worker's `project-views` table (named by faust's rule)."""
        return f"{self.streams_app_id}-project-views-changelog"

    @property
    def streams_repair_topic(self) -> str:
        """Status events the views table missed, sent again by the leader for the agent to fold (streams/repair.py)."""
        return f"{self.streams_app_id}-repairs"

    @property
    def streams_leader_topic(self) -> str:
        """faust's leader election topic (one partition): its one owner in the group is the leader."""
        return f"{self.streams_app_id}-__assignor-__leader"

    def eligibility_rules(self) -> EligibilityRules:
        return EligibilityRules(
            partner_countries=frozenset(c.upper() for c in self.partner_countries),
            usd_per_unit=dict(self.fx_usd_per_unit),
            rate_date=self.fx_rate_date,
        )


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment; SettingError (one line naming the variable) when one is wrong."""
    try:
        return Settings()
    except ValidationError as err:
        raise SettingError.of(err) from err
