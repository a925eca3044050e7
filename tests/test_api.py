"""The admin API, endpoint by endpoint: what each answers, who may call it, what a district
viewer can never see, and how bad input is refused. Every JSON answer is also checked against
the OpenAPI document (tests.apikit), so the document describes what the server really does."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from hub.api.endpoints import PREFIX, api
from hub.api.openapi import document
from hub.apply import apply
from hub.config import load_config
from hub.store.tables import connections, vault_secrets

#: A concrete path for each endpoint, naming millbrook's data where the endpoint takes one:
#: the isolation test calls each as eastview's viewer.
SAMPLE_PATHS = {
    "/members/{code}": "/members/millbrook",
    "/services/{code}": "/services/cbo-payroll",
    "/connections/{name}": "/connections/millbrook-payroll",
    "/connections/{name}/check": "/connections/millbrook-payroll/check",
    "/routes/{name}": "/routes/millbrook-payroll",
    "/runs/{id}": "/runs/{millbrook_run}",
    "/runs/{id}/cancel": "/runs/{millbrook_run}/cancel",
    "/dead-letters/{id}": "/dead-letters/{harbor_letter}",
    "/statements/{period}/{member}": "/statements/{month}/millbrook",
    "/tokens/{id}": "/tokens/nosuchtoken",
}


def month() -> str:
    """This month where the example cooperative bills (config/cooperative.toml's time zone): in
    the first hours of a month in UTC it is still the last month there."""
    return datetime.now(ZoneInfo("America/New_York")).strftime("%Y-%m")


async def facts(hub) -> dict[str, object]:
    runs = (await hub.call("GET", "/runs")).body["items"]
    letters = (await hub.call("GET", "/dead-letters")).body["items"]
    return {
        "millbrook_run": next(r["id"] for r in runs if r["member"] == "millbrook"),
        "harbor_letter": next(x["id"] for x in letters if x["member"] == "harbor-falls"),
        "month": month(),
    }


def concrete(path: str, known: dict[str, object]) -> str:
    return SAMPLE_PATHS.get(path, path).format(**known)


# -- the document ----------------------------------------------------------------------------


async def test_the_openapi_document_lists_exactly_the_served_endpoints(hub):
    from hub.api.app import build_app

    answer = await hub.session.get(f"{hub.url}{PREFIX}/openapi.json")  # public: no token
    assert answer.status == 200
    doc = await answer.json()
    assert doc["openapi"].startswith("3.1") and doc == json.loads(json.dumps(document()))
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (r.method, r.resource.canonical)
        for r in build_app(hub.runtime, hub.config_dir).router.routes()
        if r.resource is not None and r.resource.canonical.startswith(PREFIX) and r.method != "HEAD"
    }
    assert served == listed | {("GET", f"{PREFIX}/openapi.json")}
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            assert operation["summary"] and operation["responses"], path


# -- who may call ----------------------------------------------------------------------------


async def test_every_endpoint_wants_a_token(hub):
    known = await facts(hub)
    for e in api.endpoints:
        answer = await hub.call(e.method, concrete(e.path, known), as_=None)
        assert answer.status == 401, (e.method, e.path)
        assert answer.body["error"]["code"] == "unauthorized"


async def test_a_forged_or_revoked_token_is_refused(hub):
    forged = hub.tokens["admin"][:-4] + "AAAA"
    answer = await hub.session.get(
        f"{hub.url}{PREFIX}/whoami", headers={"Authorization": f"Bearer {forged}"}
    )
    assert answer.status == 401
    made = await hub.call("POST", "/tokens", json={"name": "temp", "role": "operator"})
    assert made.status == 201 and made.body["token"].startswith("cohub_")
    hub.tokens["temp"] = made.body["token"]
    assert (await hub.call("GET", "/whoami", as_="temp")).body["role"] == "operator"
    assert (await hub.call("DELETE", f"/tokens/{made.body['id']}")).status == 204
    assert (await hub.call("GET", "/whoami", as_="temp")).status == 401
    assert (await hub.call("DELETE", f"/tokens/{made.body['id']}")).status == 404


async def test_each_role_is_refused_what_it_may_not_do(hub):
    known = await facts(hub)
    for e in api.endpoints:
        for role in ("admin", "operator", "billing", "eastview"):
            kind = "viewer" if role == "eastview" else role
            if e.allow is None or kind in e.allow:
                continue
            answer = await hub.call(e.method, concrete(e.path, known), as_=role)
            assert answer.status == 403, (role, e.method, e.path, answer.status)


# -- a district viewer sees its own member only ----------------------------------------------

READS_OWN_ONLY = {"/members", "/connections", "/routes", "/runs", "/dead-letters"}


async def test_a_viewer_never_sees_another_members_data_through_any_endpoint(hub):
    """Endpoint by endpoint, eastview's viewer asks for millbrook's data (and harbor-falls'
    dead letters): every answer is a refusal or holds eastview's data alone."""
    known = await facts(hub)
    checked = set()
    for e in api.endpoints:
        path = concrete(e.path, known)
        body = (
            {
                "/runs": {"route": "millbrook-payroll"},
                "/usage/events": {
                    "events": [
                        {
                            "idempotency_key": "x",
                            "member": "millbrook",
                            "service": "cbo-payroll",
                            "meter": "records_synced",
                            "quantity": "1",
                            "occurred_at": "2026-11-01T00:00:00Z",
                        }
                    ]
                },
                "/dead-letters/replay": {"ids": [known["harbor_letter"]]},
                "/dead-letters/discard": {"ids": [known["harbor_letter"]]},
            }.get(e.path)
            if e.method == "POST"
            else None
        )
        answer = await hub.call(e.method, path, as_="eastview", json=body)
        text = answer.text
        if answer.status in (403, 404):
            pass
        elif e.path in READS_OWN_ONLY:
            assert answer.status == 200
            members = {item.get("member", item.get("code")) for item in answer.body["items"]}
            assert members <= {"eastview"}, (e.path, members)
        elif e.path in ("/status", "/usage", "/statements"):
            if e.path == "/statements":
                path = f"/statements?period={month()}"
                answer = await hub.call("GET", path, as_="eastview")
                text = answer.text
            assert answer.status == 200, (e.path, text)
        else:
            assert e.path in (
                "/whoami",
                "/services",
                "/services/{code}",
                "/connectors",
                "/meters",
            ), f"{e.method} {e.path} answered a viewer {answer.status}: add it to this test"
        if answer.status in (403, 404):  # the message may echo what was asked, nothing more
            assert set(answer.body) == {"error"}
        else:
            assert "millbrook" not in text and "harbor" not in text, (e.method, e.path, text[:300])
        checked.add((e.method, e.path))
    assert checked == {(e.method, e.path) for e in api.endpoints}
    # Asking a read for another member by filter is refused, not quietly narrowed.
    assert (await hub.call("GET", "/usage?member=millbrook", as_="eastview")).status == 403
    answer = await hub.call("GET", "/runs?member=millbrook", as_="eastview")
    assert answer.body["items"] == []


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/runs?limit=abc", "limit"),
        ("/runs?limit=0", "limit"),
        ("/runs?limit=501", "limit"),
        ("/runs?cursor=not-a-cursor", "cursor"),
        ("/runs?cursor=InRleHQi", "cursor"),  # a cursor of the wrong kind
        ("/runs?colour=red", "colour"),
        ("/runs?route=a&route=b", "route"),
        ("/runs?status=exploded", "status"),
        ("/usage?since=yesterday", "since"),
        ("/usage?period=2026-13", "period"),
        ("/usage?by=week", "by"),
        ("/dead-letters?run=x", "run"),
        ("/whoami?x=1", "x"),
    ],
)
async def test_bad_query_parameters_are_a_400_naming_the_parameter(hub, path, field):
    answer = await hub.call("GET", path)
    assert answer.status == 400, answer.text
    assert answer.body["error"]["code"] == "bad_request"
    assert answer.body["error"]["field"] == field


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"route": 5}, 422, "route"),
        ({"route": "eastview-payroll", "extra": True}, 422, "extra"),
        ({}, 422, "route"),
        ({"route": "no-such-route"}, 422, "route"),
        ([1, 2], 422, None),
    ],
)
async def test_bad_bodies_are_refused_with_the_field(hub, body, status, field):
    answer = await hub.call("POST", "/runs", as_="operator", json=body)
    assert answer.status == status, answer.text
    assert answer.body["error"]["field"] == field


async def test_malformed_json_wrong_media_type_and_oversized_bodies(hub):
    headers = {"Content-Type": "application/json"}
    answer = await hub.call("POST", "/runs", data=b'{"route": ', headers=headers)
    assert (answer.status, answer.body["error"]["code"]) == (400, "bad_request")
    answer = await hub.call("POST", "/runs", data=b"", headers=headers)
    assert answer.status == 400
    answer = await hub.call(
        "POST", "/runs", data=b"route=x", headers={"Content-Type": "text/plain"}
    )
    assert (answer.status, answer.body["error"]["code"]) == (415, "unsupported_media_type")
    huge = json.dumps({"ids": list(range(300_000))}).encode()
    answer = await hub.call("POST", "/dead-letters/discard", data=huge, headers=headers)
    assert (answer.status, answer.body["error"]["code"]) == (413, "too_large")
    answer = await hub.call("POST", "/dead-letters/discard", json={"ids": list(range(1, 1002))})
    assert (answer.status, answer.body["error"]["field"]) == (422, "ids")


async def test_unknown_paths_methods_and_ids_answer_json(hub):
    answer = await hub.call("GET", "/nothing-here")
    assert (answer.status, answer.body["error"]["code"]) == (404, "not_found")
    answer = await hub.call("PUT", "/runs")
    assert (answer.status, answer.body["error"]["code"]) == (405, "method_not_allowed")
    assert (await hub.call("GET", "/runs/99999999999999999999999")).status == 404
    assert (await hub.call("GET", "/runs/424242")).status == 404
    assert (await hub.call("GET", "/members/nobody")).status == 404


# -- what the endpoints do -------------------------------------------------------------------


async def test_lists_page_through_everything_once(hub):
    seen, cursor = [], None
    while True:
        answer = await hub.call("GET", "/runs?limit=1" + (f"&cursor={cursor}" if cursor else ""))
        seen += [r["id"] for r in answer.body["items"]]
        cursor = answer.body["next_cursor"]
        if cursor is None:
            break
    everything = [r["id"] for r in (await hub.call("GET", "/runs")).body["items"]]
    assert seen == everything == sorted(everything, reverse=True) and len(seen) == 17
    names = [m["code"] for m in (await hub.call("GET", "/members?limit=2")).body["items"]]
    assert names == ["eastview", "harbor-falls"]


def connection_body(tmp_path, **changes):
    body = {
        "name": "api-made-db",
        "connector": "sql_table",
        "description": "made through the API",
        "options": {"url": f"sqlite:///{tmp_path / 'api-made.db'}"},
        "secrets": {"password": "canary-Secret-8842"},
    }
    return {**body, **changes}


async def test_connections_are_created_with_write_only_secrets(hub, tmp_path):
    made = await hub.call("POST", "/connections", json=connection_body(tmp_path))
    assert made.status == 201, made.text
    assert made.body["secrets"] == [{"name": "password", "source": "vault"}]
    assert made.body["managed_by"] == "api"
    for answer in (made, await hub.call("GET", "/connections/api-made-db")):
        assert "canary-Secret-8842" not in answer.text
    async with hub.runtime.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(connections.c.secrets).where(connections.c.name == "api-made-db")
            )
        ).scalar()
        cipher = (await conn.execute(select(vault_secrets.c.ciphertext))).scalars().all()
    assert stored == {"password": "vault:connection.api-made-db.password"}
    assert cipher and all("canary" not in c for c in cipher)
    checked = await hub.call("POST", "/connections/eastview-payroll/check", as_="operator")
    assert checked.status == 200 and checked.body["ok"], checked.text
    assert [s["name"] for s in checked.body["streams"]] == ["pay_lines"]
    again = await hub.call("POST", "/connections", json=connection_body(tmp_path))
    assert (again.status, again.body["error"]["field"]) == (409, "name")
    # A reference instead of a value; secrets changed one by one.
    changed = await hub.call(
        "PATCH",
        "/connections/api-made-db",
        json={"secrets": {"password": {"reference": "env:DB_PASSWORD"}}, "enabled": False},
    )
    assert changed.status == 200, changed.text
    assert changed.body["secrets"] == [{"name": "password", "source": "env:DB_PASSWORD"}]
    assert changed.body["enabled"] is False
    async with hub.runtime.engine.connect() as conn:
        assert (await conn.execute(select(vault_secrets.c.name))).scalars().all() == []
    assert (await hub.call("DELETE", "/connections/api-made-db")).status == 204
    assert (await hub.call("GET", "/connections/api-made-db")).status == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"connector": "no_such"}, "connector"),
        ({"options": {"url": 5}}, "options.url"),
        ({"options": {"uri": "x"}}, "options.uri"),
        ({"secrets": {"token": "x"}}, "secrets.token"),
        ({"member": "atlantis"}, "member"),
        ({"name": "Bad Name!"}, "name"),
        ({"secrets": {"password": {"reference": "plain"}}}, "secrets.password.reference"),
    ],
)
async def test_a_bad_connection_is_refused_and_nothing_is_stored(hub, tmp_path, changes, field):
    answer = await hub.call("POST", "/connections", json=connection_body(tmp_path, **changes))
    assert answer.status == 422, answer.text
    assert answer.body["error"]["field"] == field
    assert (await hub.call("GET", "/connections/api-made-db")).status == 404


async def test_connections_from_the_folder_are_changed_in_the_folder_only(hub):
    for method, body in (("PATCH", {"enabled": False}), ("DELETE", None)):
        answer = await hub.call(method, "/connections/eastview-payroll", json=body)
        assert answer.status == 409 and "connections/eastview-payroll.toml" in answer.text
    answer = await hub.call("PATCH", "/routes/eastview-payroll", json={"enabled": False})
    assert answer.status == 409 and "routes.toml" in answer.text


async def test_an_unsaved_connection_can_be_tested(hub, tmp_path):
    options = (await hub.call("GET", "/connections/eastview-payroll")).body["options"]
    body = {"name": "eastview-copy", "connector": "flat_file", "options": options}
    good = await hub.call("POST", "/connections/test", json=body)
    assert good.status == 200 and good.body["ok"], good.text
    missing = {**options, "folder": str(tmp_path / "nowhere")}
    bad = await hub.call("POST", "/connections/test", json={**body, "options": missing})
    assert bad.status == 200 and not bad.body["ok"] and "nowhere" in bad.body["message"]
    secret = await hub.call(
        "POST",
        "/connections/test",
        json=connection_body(tmp_path, options={"url": "postgresql://cohub@127.0.0.1:1/x"}),
    )
    assert secret.status == 200 and not secret.body["ok"] and "canary" not in secret.text
    assert (await hub.call("GET", "/connections/eastview-copy")).status == 404


def route_body(**changes):
    body = {
        "name": "api-eastview",
        "source": "eastview-payroll",
        "source_stream": "pay_lines",
        "destination": "cbo-payroll-db",
        "destination_stream": "pay_lines",
        "service": "cbo-payroll",
        "schedule": {"cron": "0 2 * * *"},
    }
    return {**body, **changes}


async def wait_for(hub, run_id: int) -> dict:
    for _ in range(200):
        answer = await hub.call("GET", f"/runs/{run_id}")
        if answer.body["status"] != "running":
            return answer.body
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


async def test_routes_are_created_run_and_left_alone_by_apply(hub):
    made = await hub.call("POST", "/routes", json=route_body())
    assert made.status == 201, made.text
    assert made.body["member"] == "eastview" and made.body["schedule"]["cron"] == "0 2 * * *"
    started = await hub.call("POST", "/runs", as_="operator", json={"route": "api-eastview"})
    assert started.status == 202 and started.body["trigger"] == "api"
    finished = await wait_for(hub, started.body["id"])
    assert finished["status"] == "succeeded", finished
    changed = await hub.call(
        "PATCH", "/routes/api-eastview", json={"schedule": None, "enabled": False}
    )
    assert changed.status == 200 and changed.body["schedule"] is None
    refused = await hub.call("POST", "/runs", as_="operator", json={"route": "api-eastview"})
    assert refused.status == 409 and "disabled" in refused.text
    # `cohub apply` of the folder keeps what the API made.
    changes = await apply(hub.runtime.engine, load_config(hub.config_dir))
    assert not [c for c in changes if c.name == "api-eastview"]
    assert (await hub.call("GET", "/routes/api-eastview")).status == 200
    assert (await hub.call("DELETE", "/routes/api-eastview")).status == 204


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schedule": {"cron": "61 * * * *"}}, "schedule.cron"),
        ({"schedule": {"every": "15m", "colour": 1}}, "schedule.colour"),
        ({"source": "nowhere"}, "source"),
        ({"service": "nothing"}, "service"),
        ({"batch_size": 0}, "batch_size"),
        ({"transforms": ["no_such"]}, "transforms.0"),
        ({"mode": "sometimes"}, "mode"),
    ],
)
async def test_a_bad_route_is_refused_naming_the_field(hub, changes, field):
    answer = await hub.call("POST", "/routes", json=route_body(**changes))
    assert answer.status == 422, answer.text
    assert answer.body["error"]["field"] == field
    assert (await hub.call("GET", "/routes/api-eastview")).status == 404


async def test_a_running_route_cannot_start_twice_and_a_run_can_be_cancelled(hub):
    runs_before = (await hub.call("GET", "/runs")).body["items"]
    finished = runs_before[0]["id"]
    answer = await hub.call("POST", f"/runs/{finished}/cancel", as_="operator")
    assert answer.status == 409 and "not running" in answer.text
    detail = await hub.call("GET", f"/runs/{finished}")
    assert detail.body["records_read"] > 0 and "state_after" in detail.body


async def test_dead_letters_are_listed_masked_discarded_and_replayed(hub):
    letters = (await hub.call("GET", "/dead-letters?route=harbor-falls-payroll")).body["items"]
    assert len(letters) == 2 and all(d["status"] == "open" for d in letters)
    shown = await hub.call("GET", f"/dead-letters/{letters[0]['id']}")
    assert shown.body["record"] and shown.body["reason"]
    gone = await hub.call(
        "POST", "/dead-letters/discard", as_="operator", json={"ids": [letters[0]["id"]]}
    )
    assert gone.body == {"discarded": 1}
    again = await hub.call(
        "POST", "/dead-letters/discard", as_="operator", json={"ids": [letters[0]["id"]]}
    )
    assert again.status == 409
    replayed = await hub.call(
        "POST", "/dead-letters/replay", as_="operator", json={"ids": [letters[1]["id"]]}
    )
    assert replayed.status == 200, replayed.text
    [outcome] = replayed.body["runs"]
    assert outcome["run"]["trigger"] == "replay"
    assert str(letters[1]["id"]) in outcome["still_failing"]  # the bad account code is still bad
    listed = await hub.call("GET", "/dead-letters?status=discarded")
    assert [d["id"] for d in listed.body["items"]] == [letters[0]["id"]]


async def test_usage_is_read_and_posted_once(hub):
    event = {
        "idempotency_key": "helpdesk-ticket-1",
        "member": "eastview",
        "service": "cbo-payroll",
        "meter": "records_synced",
        "quantity": "2.5",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    first = await hub.call("POST", "/usage/events", as_="billing", json={"events": [event]})
    assert first.body == {"accepted": 1, "duplicates": 0}, first.text
    second = await hub.call("POST", "/usage/events", as_="billing", json={"events": [event]})
    assert second.body == {"accepted": 0, "duplicates": 1}
    bad = await hub.call(
        "POST",
        "/usage/events",
        as_="billing",
        json={"events": [event, {**event, "meter": "smiles"}]},
    )
    assert (bad.status, bad.body["error"]["field"]) == (422, "events.1")
    usage = await hub.call(
        "GET",
        f"/usage?member=eastview&service=cbo-payroll&meter=records_synced&period={month()}",
    )
    [row] = usage.body["items"]
    assert Decimal(row["quantity"]) == Decimal("53.5")  # 51 synced records and the posted 2.5
    own = await hub.call("GET", "/usage?by=day", as_="eastview")
    assert own.body["items"] and {r["member"] for r in own.body["items"]} == {"eastview"}


async def test_statements_are_listed_and_downloaded(hub):
    period = month()
    listed = await hub.call("GET", f"/statements?period={period}", as_="billing")
    assert listed.status == 200 and len(listed.body["items"]) == 3
    assert listed.body["closed"] is False
    mine = await hub.call("GET", f"/statements?period={period}", as_="eastview")
    assert [s["member"] for s in mine.body["items"]] == ["eastview"]
    csv = await hub.call("GET", f"/statements/{period}/eastview?format=csv", as_="eastview")
    assert csv.status == 200 and csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("period,member,service")
    page = await hub.call("GET", f"/statements/{period}/eastview?format=html", as_="billing")
    assert "Statement for Eastview" in page.text
    body = await hub.call("GET", f"/statements/{period}/eastview", as_="billing")
    assert (
        body.body["total"]
        == next(s for s in listed.body["items"] if s["member"] == "eastview")["total"]
    )
    assert (await hub.call("GET", "/statements?period=someday", as_="billing")).status == 400
    assert (await hub.call("GET", f"/statements/{period}/millbrook", as_="eastview")).status == 403
    assert (await hub.call("GET", "/statements", as_="billing")).status == 400  # period required


async def test_tokens_are_made_for_a_role_and_a_viewer_for_one_member(hub):
    no_member = await hub.call("POST", "/tokens", json={"name": "x", "role": "viewer"})
    assert no_member.status == 422
    bad_role = await hub.call("POST", "/tokens", json={"name": "x", "role": "superuser"})
    assert (bad_role.status, bad_role.body["error"]["field"]) == (422, "role")
    made = await hub.call(
        "POST",
        "/tokens",
        json={"name": "mb", "role": "viewer", "member": "millbrook", "expires_in_days": 1},
    )
    assert made.status == 201 and made.body["member"] == "millbrook"
    listed = await hub.call("GET", "/tokens")
    assert "secret_hash" not in listed.text and made.body["token"] not in listed.text
    assert {t["name"] for t in listed.body["items"]} >= {"admin", "mb"}


async def test_an_expired_token_is_refused(hub):
    from sqlalchemy import update

    from hub.api.auth import Verifier
    from hub.store.tables import api_tokens

    made = await hub.call(
        "POST", "/tokens", json={"name": "short", "role": "billing", "expires_in_days": 1}
    )
    hub.tokens["short"] = made.body["token"]
    async with hub.runtime.engine.begin() as conn:
        await conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == made.body["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    Verifier.forget(made.body["id"])
    assert (await hub.call("GET", "/whoami", as_="short")).status == 401
