"""Tests of the configuration tables: SRT's as shipped, the TOML format, the nodding rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from discosbackend.configurations import (ALL_FEEDS, BOTH_FEEDS, DISTINCT_FEEDS, MODES, SRT,
                                          Configuration, ConfigurationError, SectionLayout,
                                          load, parse, srt, table_named)

#: The configurations of SRT as the telescope's configuration database has them:
#: name -> (family, sections, bandwidth MHz, polarizations, bins), feeds 0 0 (1 1 ... 6 6).
SRT_TABLE = {
    "SK00": ("Sardara", 2, 1500, "LR", 1024), "SC00": ("Sardara", 2, 1500, "LR", 1024),
    "SL00": ("Sardara", 2, 1500, "LR", 1024), "SP00": ("Sardara", 2, 500, "LR", 1024),
    "SK77": ("Sardara", 14, 1500, "LR" * 7, 1024),
    "SK00S": ("Sardara", 2, 1500, "SS", 1024), "SC00S": ("Sardara", 2, 1500, "SS", 1024),
    "SL00S": ("Sardara", 2, 1500, "SS", 1024), "SP00S": ("Sardara", 2, 500, "SS", 1024),
    "SK77S": ("Sardara", 14, 1500, "S" * 14, 1024),
    "SKARAB_1": ("SKARAB", 2, 1400, "LR", 2048), "SKARAB_2": ("SKARAB", 2, 187.5, "LR", 32768),
    "SKARAB_3": ("SKARAB", 2, 187.5, "LR", 65536), "SKARAB_4": ("SKARAB", 2, 93.75, "LR", 32768),
    "SKARAB_5": ("SKARAB", 2, 93.75, "LR", 65536),
    "SKARAB_1S": ("SKARAB", 2, 1400, "SS", 2048),
    "SKARAB_2S": ("SKARAB", 2, 187.5, "SS", 32768),
    "SKARAB_3S": ("SKARAB", 2, 187.5, "SS", 65536),
    "SKARAB_4S": ("SKARAB", 2, 93.75, "SS", 32768),
    "SKARAB_5S": ("SKARAB", 2, 93.75, "SS", 65536),
}
LETTER = {"L": "LCP", "R": "RCP", "S": "Stokes"}

GOOD = """
[families]
Wide = { nodding = "both-feeds" }

[configurations.XK14]
family = "Wide"
bandwidth = [100, 200.5, 300]
bins = 2048
feeds = [2, 2, 5]
polarizations = ["l", "RCP", "FullStokes"]
"""


def test_srt_is_the_telescope_table() -> None:
    table = srt()
    assert list(table) == list(SRT_TABLE)
    for name, (family, count, bandwidth, polarizations, bins) in SRT_TABLE.items():
        configuration = table[name]
        assert (configuration.name, configuration.family) == (name, family)
        assert configuration.nodding == (BOTH_FEEDS if family == "Sardara" else DISTINCT_FEEDS)
        assert configuration.sections == tuple(
            SectionLayout(index // 2, LETTER[letter], float(bandwidth), bins)
            for index, letter in enumerate(polarizations)), name
        assert len(configuration.sections) == count == configuration.count()
    assert srt() is table  # read once
    assert table_named(SRT) is table
    with pytest.raises(TypeError):
        table["X"] = table["SK00"]  # type: ignore[index]


@pytest.mark.parametrize("name, enabled, inputs", [
    ("SK77", None, [(index, index // 2) for index in range(14)]),
    ("SK77", (7, 7), [(index, index // 2) for index in range(14)]),
    ("SK77", (3, ALL_FEEDS), [(index, index // 2) for index in range(14)]),
    ("SK77", (2, 3), [(4, 2), (5, 2), (6, 3), (7, 3)]),
    ("SK77", (3, 2), [(6, 3), (7, 3), (4, 2), (5, 2)]),
    ("SK77", (3, 3), [(6, 3), (7, 3), (6, 3), (7, 3)]),  # Sardara: always both
    ("SK00", (0, 4), [(0, 0), (1, 0), (0, 4), (1, 4)]),  # feed 4 borrows feed 0's sections
    ("SKARAB_1", (3, 3), [(0, 3), (1, 3)]),  # SKARAB: one feed once
    ("SKARAB_1", (0, 3), [(0, 0), (1, 0), (0, 3), (1, 3)]),
])
def test_inputs_follow_the_nodding_rule(name: str, enabled: tuple[int, int] | None,
                                        inputs: list[tuple[int, int]]) -> None:
    configuration = srt()[name]
    assert list(configuration.inputs(enabled)) == inputs
    assert configuration.count(enabled) == len(inputs)


def test_a_table_with_lists_per_section_and_a_table_per_configuration() -> None:
    table = parse(GOOD, "good.toml")
    assert table == {"XK14": Configuration("XK14", "Wide", BOTH_FEEDS, (
        SectionLayout(2, "LCP", 100.0, 2048), SectionLayout(2, "RCP", 200.5, 2048),
        SectionLayout(5, "Stokes", 300.0, 2048)))}
    assert table["XK14"].count((5, 5)) == 2
    assert table["XK14"].count((0, 5)) == 3  # feed 0 borrows feed 2's two sections


@pytest.mark.parametrize("text, message", [
    ("families = [", "t.toml: "),
    ("[families]\n", "t.toml: configurations missing"),
    ("[configurations]\n", "t.toml: families missing"),
    ("families = {}\nconfigurations = {}\nextra = 1\n", "t.toml: unknown key extra (the keys "
                                                        "are families, configurations)"),
    ("families = 3\nconfigurations = {}\n", "t.toml: families must be a table"),
    ("families = {}\nconfigurations = {}\n", "t.toml: no configurations"),
    ("families = {}\nconfigurations = 1\n", "t.toml: configurations must be a table"),
    ("families.F = 1\nconfigurations = {}\n", "t.toml: family F must be a table"),
    ("families.F = {}\nconfigurations = {}\n", "t.toml: family F: nodding missing"),
    ('families.F = { nodding = "sometimes" }\nconfigurations = {}\n',
     "t.toml: family F: nodding 'sometimes' unknown (use both-feeds or distinct-feeds)"),
])
def test_a_bad_table_says_where_and_why(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse(text, "t.toml")
    assert str(raised.value).startswith(message)


ENTRY = {"family": '"F"', "bandwidth": "500", "bins": "1024", "feeds": "[0, 0]",
         "polarizations": '["L", "R"]'}


@pytest.mark.parametrize("changes, message", [
    ({"family": '"G"'}, "family 'G' unknown (declare it under [families])"),
    ({"family": None}, "family missing"),
    ({"colour": '"red"'}, "unknown key colour (the keys are family, bandwidth, bins, feeds, "
                          "polarizations)"),
    ({"feeds": "[]"}, "feeds must be a non-empty list"),
    ({"feeds": "0"}, "feeds must be a non-empty list"),
    ({"feeds": "[0, -1]"}, "feeds -1 is not an integer >= 0"),
    ({"feeds": "[0, 1.5]"}, "feeds 1.5 is not an integer >= 0"),
    ({"feeds": "[0, true]"}, "feeds True is not an integer >= 0"),
    ({"polarizations": '["L", "X"]'}, "polarizations 'X' is not L R S or a set-section mode"),
    ({"polarizations": '["L", 1]'}, "polarizations 1 is not L R S"),
    ({"polarizations": '["L"]'}, "2 feeds but 1 polarizations (one of each per section)"),
    ({"bandwidth": "0"}, "bandwidth 0 is not a number > 0"),
    ({"bandwidth": "nan"}, "bandwidth nan is not a number > 0"),
    ({"bandwidth": '"wide"'}, "bandwidth 'wide' is not a number > 0"),
    ({"bandwidth": "[500, 500, 500]"}, "bandwidth has 3 values for 2 sections (give one value "
                                       "or one per section)"),
    ({"bins": "1.5"}, "bins 1.5 is not an integer > 0"),
    ({"bins": "[1024]"}, "bins has 1 values for 2 sections"),
    ({"bins": "[]"}, "bins must be a non-empty list"),
])
def test_a_bad_configuration_says_which_and_why(changes: dict[str, str | None],
                                                message: str) -> None:
    entry = {**ENTRY, **changes}
    fields = ", ".join(f"{key} = {value}" for key, value in entry.items() if value is not None)
    text = f'families.F = {{ nodding = "both-feeds" }}\nconfigurations.XK = {{ {fields} }}\n'
    with pytest.raises(ConfigurationError) as raised:
        parse(text, "t.toml")
    assert str(raised.value).startswith(f"t.toml: configuration XK: {message}")


@pytest.mark.parametrize("name", ["SK.00", "", "x" * 33, "é"])
def test_a_configuration_name_the_protocol_cannot_carry_is_refused(name: str) -> None:
    text = ('families.F = { nodding = "both-feeds" }\n'
            f'[configurations."{name}"]\nfamily = "F"\nbandwidth = 1\nbins = 1\nfeeds = [0]\n'
            'polarizations = ["L"]\n')
    with pytest.raises(ConfigurationError, match="a name is 1 to 32 letters digits - or _"):
        parse(text)


def test_a_configuration_that_is_not_a_table() -> None:
    with pytest.raises(ConfigurationError, match="^<table>: configuration XK must be a table$"):
        parse('families = {}\nconfigurations.XK = 3\n')


def test_files_are_loaded_and_errors_name_them(tmp_path: Path) -> None:
    good = tmp_path / "site.toml"
    good.write_text(GOOD, encoding="utf-8")
    assert list(load(str(good))) == ["XK14"]
    assert table_named(str(good)) == load(str(good))
    with pytest.raises(ConfigurationError, match=f"^cannot read {tmp_path}/nope.toml: "
                                                 "No such file or directory$"):
        load(str(tmp_path / "nope.toml"))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigurationError, match=f"^cannot read {binary}: 'utf-8' codec"):
        load(str(binary))
    broken = tmp_path / "broken.toml"
    broken.write_text("[families\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=rf"^{broken}: .*\(at line 1, column 10\)"):
        load(str(broken))


def test_every_mode_of_set_section_is_a_polarization_of_the_table() -> None:
    assert set(MODES.values()) == {"LCP", "RCP", "CP", "Stokes"}
    for letter, mode in LETTER.items():
        assert MODES[letter.lower()] == mode


def test_the_readme_example_is_a_valid_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    table = parse(example, "README.md")
    assert list(table) == ["SK00", "XK14"]
    assert table["XK14"].count() == 4 and table["XK14"].count((3, 3)) == 2
    assert [section.bandwidth for section in table["XK14"].sections] == [250, 500, 250, 500]
