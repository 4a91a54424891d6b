"""graph.reports against the real emulator over HTTPS: the registration report's rows of many
people in few reports-class calls, and what the dry run's estimate says those calls cost.

The emulator here is one of this module's own, with 2,500 people (three pages of the report at
999 rows), so that the choice between one Get per person and a scan shows in the call counts.
Calls are counted by the client's shared budget: every call takes one token of its class.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from entra_emulator import reports_api
from entra_emulator.seed import CLIENT_ID, CLIENT_SECRET, PERSONAS, TENANT_ID
from entra_emulator.server import EmulatorServer
from graph import BudgetRate, GraphClient, GraphConfig, GraphPermissionDenied, reports
from graph.operations import REGISTRY
from graph.reports import RegistrationDetails
from graph.results import PreferredSecondaryMethod

PEOPLE = 2500
SAM = PERSONAS["sam.standard"]["id"]


@pytest.fixture(scope="module")
def big_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    server = EmulatorServer(
        state_dir=tmp_path_factory.mktemp("report-emulator"),
        port=0,
        users=PEOPLE,
        throttle_enabled=False,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(big_emulator: EmulatorServer) -> GraphClient:
    config = GraphConfig(
        tenant_id=TENANT_ID,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        login_host=big_emulator.base_url.removeprefix("https://"),
        graph_url=big_emulator.base_url,
        ca_bundle=str(big_emulator.ca_path),
        redis_url=os.environ["REDIS_URL"],
        budgets={"reports": BudgetRate(1000, 1), "identity": BudgetRate(1000, 1)},
        budget_prefix=f"test:reports:{uuid.uuid4().hex}",
        max_retries=1,
        backoff_base=0.01,
    )
    return GraphClient(config)


def _calls(client: GraphClient, throttle_class: str = "reports") -> int:
    used: int = client.budget.snapshot()["classes"][throttle_class]["hour"]["used"]
    return used


def _enabled(emu: EmulatorServer) -> list[str]:
    """Enabled people in the report's order (the emulator's: by object id)."""
    return sorted(uid for uid, u in emu.tenant.users.items() if u["accountEnabled"])


def _spread(ids: list[str], count: int) -> list[str]:
    """``count`` ids spread over ``ids``, the last one always included (so a scan must read
    every page to find them all)."""
    if count == 1:
        return [ids[-1]]
    step = (len(ids) - 1) / (count - 1)
    return [ids[round(i * step)] for i in range(count)]


@pytest.mark.parametrize(("count", "expected_calls"), [(1, 1), (50, 3), (1000, 3)])
def test_call_counts_for_1_50_and_1000_people(
    big_emulator: EmulatorServer, client: GraphClient, count: int, expected_calls: int
) -> None:
    wanted = _spread(_enabled(big_emulator), count)
    assert reports.registration_details_calls(count, tenant_users=PEOPLE) == expected_calls
    found = reports.registration_details(client, wanted, tenant_users=PEOPLE)
    assert set(found) == set(wanted)
    assert _calls(client) == expected_calls
    assert _calls(client, "identity") == 0
    # Each count is the emulator's truth: the names of the methods besides the password.
    for user_id in wanted:
        methods = big_emulator.tenant.methods.get(user_id, [])
        assert set(found[user_id].methods_registered) == set(reports_api.method_names(methods))


def test_without_the_tenant_size_it_scans_and_stops_when_all_are_found(
    big_emulator: EmulatorServer, client: GraphClient
) -> None:
    ids = _enabled(big_emulator)
    assert set(reports.registration_details(client, [ids[0], ids[10]])) == {ids[0], ids[10]}
    assert _calls(client) == 1  # both on the first page
    assert set(reports.registration_details(client, [ids[0], ids[-1]])) == {ids[0], ids[-1]}
    assert _calls(client) == 1 + reports.scan_calls(PEOPLE)


def test_disabled_unknown_and_repeated_ids(
    big_emulator: EmulatorServer, client: GraphClient
) -> None:
    disabled = next(uid for uid, u in big_emulator.tenant.users.items() if not u["accountEnabled"])
    unknown = str(uuid.uuid4())
    asked = [SAM, SAM.upper(), f" {SAM} ", disabled, unknown]
    # Three distinct ids, fewer than the three pages: one Get each, 404s answered as missing.
    by_get = reports.registration_details(client, asked, tenant_users=10 * PEOPLE)
    assert set(by_get) == {SAM}
    assert _calls(client) == 3
    by_scan = reports.registration_details(client, asked, tenant_users=PEOPLE)
    assert set(by_scan) == {SAM}
    assert _calls(client) == 3 + reports.scan_calls(PEOPLE)
    assert by_get[SAM].methods_registered == by_scan[SAM].methods_registered != ()
    assert reports.registration_details(client, []) == {}
    assert reports.get_registration_details(client, disabled) is None


def test_a_row_reads_into_registration_details(
    big_emulator: EmulatorServer, client: GraphClient
) -> None:
    row = reports.get_registration_details(client, SAM)
    assert row is not None
    assert row.user_id == SAM and row.user_principal_name.startswith("sam.standard@")
    assert row.default_method is PreferredSecondaryMethod.PUSH
    assert row.is_mfa_registered is True and row.is_admin is False
    assert row.method_count == 2  # mobile phone and Authenticator; the password is not counted
    assert row.last_updated is not None and row.last_updated.tzinfo is not None


def test_last_updated_is_the_snapshot_time(
    big_emulator: EmulatorServer, client: GraphClient
) -> None:
    """Interval 0: each read takes a new snapshot. A long interval: every read within it sees
    one snapshot, each row with that snapshot's time (the docs' sample shares one value)."""
    first, second = (reports.get_registration_details(client, SAM) for _ in range(2))
    assert first is not None and second is not None
    assert first.last_updated is not None and second.last_updated is not None
    assert first.last_updated < second.last_updated
    reports_api.set_report_refresh_seconds(big_emulator.tenant, 3600)
    try:
        ids = _enabled(big_emulator)
        rows = reports.registration_details(client, ids[:3] + ids[-3:])
        later = reports.get_registration_details(client, SAM)
        assert later is not None
        assert {row.last_updated for row in rows.values()} == {later.last_updated}
    finally:
        reports_api.set_report_refresh_seconds(big_emulator.tenant, 0)


def test_a_tenant_without_p1_or_p2_is_told_apart(
    big_emulator: EmulatorServer, client: GraphClient
) -> None:
    big_emulator.set_licence("free")
    try:
        with pytest.raises(GraphPermissionDenied) as refused:
            reports.registration_details(client, [SAM])
        assert reports.is_licence_refusal(refused.value)
        assert refused.value.request_id
    finally:
        big_emulator.set_licence("p2")


def test_both_operations_are_in_the_reports_class() -> None:
    for name in ("reports.registration_details", "reports.registration_details_of"):
        assert REGISTRY[name].throttle_class == "reports"
    assert REGISTRY["reports.registration_details_of"].select == ()


@pytest.mark.parametrize(
    ("count", "tenant_users", "calls"),
    [
        (0, 100_000, 0),
        (1, 100_000, 1),
        (50, 100_000, 50),  # 50 Gets are fewer than 101 pages
        (312, 50_000, 51),
        (1000, 100_000, 101),
        (1000, 200, 1),
    ],
)
def test_the_estimate(count: int, tenant_users: int, calls: int) -> None:
    assert reports.registration_details_calls(count, tenant_users=tenant_users) == calls


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("sms", PreferredSecondaryMethod.SMS), ("none", None), ("", None), (None, None), ("x", None)],
)
def test_the_default_method_values(
    raw: str | None, expected: PreferredSecondaryMethod | None
) -> None:
    row = RegistrationDetails.from_graph(
        {"id": "u1", "userPreferredMethodForSecondaryAuthentication": raw}
    )
    assert row.default_method is expected
    assert row.raw_default_method == (raw or "")
    assert row.methods_registered == () and row.is_mfa_registered is None
