"""Group names in rules beyond letters and digits: `group["VIP 会员群"]`, and an unknown
group's name reported by check-config and the rule trial (22)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from bot.config import DimensionSettings
from bot.db import Database
from bot.db.models import Customer, GroupChat, GroupMember, TierAssignment
from bot.reports.rule_trial import TrialFrames, trial
from bot.rules import RuleError, load_dimensions, names_in, parse_and_check
from bot.tiering.run import retier
from tagbot.cli import main
from tests.support.configs import toml_text
from tests.support.corp import base_config
from tests.tier_metrics_factory import AS_OF, TZ, customer

VIP = "VIP 会员群（一）"  # a space and full-width brackets
NEW = "2024新品群"  # a leading digit
DIMENSION = {
    "name": "groups",
    "tag_group": "群",
    "tiers": [
        {"tag": "VIP群", "when": f'group["{VIP}"]'},
        {"tag": "新品群", "when": f"group['{NEW}'] and not group[\"{VIP}\"]"},
    ],
}


def test_a_quoted_name_reads_as_the_dotted_one() -> None:
    assert names_in(parse_and_check('group["VIP会员群"]')) == {"group.VIP会员群"}
    assert names_in(parse_and_check(f"group[\"{VIP}\"] or group['{NEW}']")) == {
        f"group.{VIP}",
        f"group.{NEW}",
    }
    assert names_in(parse_and_check('group["say \\"hi\\""]')) == {'group.say "hi"'}
    checked = parse_and_check('profile["会员 等级"] == "金卡"')
    assert names_in(checked) == {"profile.会员 等级"}
    with pytest.raises(RuleError, match=r"'spend_365d' takes no quoted name") as bad:
        parse_and_check('spend_365d["x"] > 1')
    assert (bad.value.start, bad.value.end) == (0, 15)
    with pytest.raises(RuleError, match=r"needs a name inside the quotes"):
        parse_and_check('group[" "]')
    with pytest.raises(RuleError, match="unterminated string"):
        parse_and_check('group["VIP')
    with pytest.raises(RuleError, match="compares numbers only"):
        parse_and_check(f'group["{VIP}"] > 1')
    # '[' is named only where nothing else may follow; old messages are unchanged.
    with pytest.raises(RuleError) as err:
        parse_and_check("spend_365d 5")
    assert "'['" not in err.value.message


def _build(db: Database) -> None:
    with db.write() as s:
        for ext in ("in_vip", "in_new", "in_both", "nowhere", "left_vip"):
            customer(s, ext)
        groups = {}
        for name in (VIP, NEW):
            g = GroupChat(chat_id=f"wr{len(groups)}", name=name)
            s.add(g)
            s.flush()
            groups[name] = g.id
        joined = AS_OF - timedelta(days=3)
        stays = [
            (VIP, "in_vip", None),
            (NEW, "in_new", None),
            (VIP, "in_both", None),
            (NEW, "in_both", None),
            (VIP, "left_vip", AS_OF - timedelta(days=1)),
        ]
        for name, ext, left in stays:
            s.execute(
                insert(GroupMember).values(
                    group_chat_id=groups[name],
                    member_userid=ext,
                    member_type=2,
                    joined_at=joined,
                    join_scene=3,
                    left_at=left,
                )
            )


def test_tier_rules_and_the_trial_read_quoted_group_names(db: Database) -> None:
    _build(db)
    dims = load_dimensions([DimensionSettings.model_validate(DIMENSION)])
    retier(db, dims, tz=TZ, as_of=AS_OF)
    with db.read() as session:
        tiers = dict(
            session.execute(
                select(Customer.external_userid, TierAssignment.tier).join(
                    TierAssignment, TierAssignment.customer_id == Customer.id
                )
            ).all()
        )
    assert tiers == {"in_vip": "VIP群", "in_both": "VIP群", "in_new": "新品群"}
    frames = TrialFrames()
    try:
        found = trial(f'group["{VIP}"]', db=db, frames=frames, tz=TZ, now=AS_OF)
        assert found.error is None
        assert found.names == (f"group.{VIP}",)
        assert sorted(r.external_userid for r in found.sample) == ["in_both", "in_vip"]
        typo = "VIP 会员群（二）"
        wrong = trial(f'not group["{typo}"]', db=db, frames=frames, tz=TZ, now=AS_OF)
    finally:
        frames.close()
    assert wrong.error is not None
    assert f"no customer group named {typo!r}" in wrong.error.message
    assert f"did you mean {VIP!r}" in wrong.error.message
    assert (wrong.error.start, wrong.error.end) == (4, 4 + len(f'group["{typo}"]'))


def _config(tmp_path: Path, db_url: str, when: str) -> Path:
    text = toml_text(base_config(db_url, api_base="http://127.0.0.1:9"))
    text += '\n[[tiering.dimensions]]\nname = "groups"\ntag_group = "群"\n'
    text += f"[[tiering.dimensions.tiers]]\ntag = \"VIP群\"\nwhen = '{when}'\n"
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_config_names_a_rules_unknown_group(
    tmp_path: Path, db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before any group sync the names cannot be checked: a warning, not a failure.
    path = _config(tmp_path, db_url, 'group["不存在的群"] or group.VIP会员群')
    assert main(["--config", str(path), "check-config"]) == 0
    assert "group names not checked" in capsys.readouterr().err
    with db.write() as session:
        session.add_all(
            [
                GroupChat(chat_id="wrA", name="VIP会员群"),
                GroupChat(chat_id="wrB", name="已解散的群", dismissed_at=AS_OF),
            ]
        )
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert (
        "tiering.dimensions[0].tiers[0].when: no customer group named '不存在的群'"
        " (客户群“不存在的群”不存在、已改名或已解散)"
    ) in err
    assert "Traceback" not in err
    path = _config(tmp_path, db_url, 'group["已解散的群"]')
    assert main(["--config", str(path), "check-config"]) == 2
    assert "no customer group named '已解散的群'" in capsys.readouterr().err
    path = _config(tmp_path, db_url, 'group["VIP会员群"] and groups_count >= 1')
    assert main(["--config", str(path), "check-config"]) == 0
    assert "配置有效" in capsys.readouterr().out


def test_a_retier_warns_of_a_rules_unknown_group(
    tmp_path: Path, db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A renamed or dismissed group makes its rule false for everyone: the run goes on (one
    # bad name must not stop all tiering) but says so, on the CLI and in the log.
    with db.write() as session:
        session.add(GroupChat(chat_id="wrA", name="VIP会员群"))
    path = _config(tmp_path, db_url, 'group["不存在的群"] or group.VIP会员群')
    assert main(["--config", str(path), "retier", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert (
        "警告 / warning: tiering.dimensions[0].tiers[0].when: no customer group named '不存在的群'"
    ) in err
    path = _config(tmp_path, db_url, 'group["VIP会员群"]')
    assert main(["--config", str(path), "retier", "--dry-run"]) == 0
    assert "警告" not in capsys.readouterr().err
