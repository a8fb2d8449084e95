"""One configuration source: a config file (`.toml` or an env file) under the environment,
each mistake in it stopping with one line that names the file and the line or key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fedi.config import VARIABLES, load_settings, read_config_file
from fedi.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "deploy" / "fedi.env.example"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_toml_file_sets_every_kind_of_value(tmp_path: Path) -> None:
    path = write(tmp_path, "fedi.toml", '# comment\nbase_url = "https://Groups.Example/"\n'
                 'database_url = "postgres://fedi:pw@db/fedi"\nauthorized_fetch = true\n'
                 'delivery_per_host = 3\ninstance_name = "Cats & co"\n')
    settings = load_settings({}, config_file=path)
    assert settings.base_url == "https://groups.example"
    assert settings.database_url == "postgresql+asyncpg://fedi:pw@db/fedi"
    assert settings.authorized_fetch is True
    assert settings.delivery_per_host == 3
    assert settings.instance_name == "Cats & co"
    assert settings.config_file == str(path)


def test_an_env_file_is_read_as_a_shell_reads_it(tmp_path: Path) -> None:
    path = write(tmp_path, "fedi.env", "# comment\n\n  export FEDI_BASE_URL=https://a.example\n"
                 "FEDI_INSTANCE_NAME='My groups'\nFEDI_DATABASE_URL=\"sqlite:///x y.db\"\n"
                 "FEDI_ACCESS_LOG=0\n")
    settings = load_settings({}, config_file=path)
    assert settings.base_url == "https://a.example"
    assert settings.instance_name == "My groups"
    assert settings.database_url == "sqlite+aiosqlite:///x y.db"
    assert settings.access_log is False


def test_fedi_config_names_the_file_and_the_environment_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "fedi.toml", 'base_url = "https://a.example"\ndelivery_per_host = 3\n')
    settings = load_settings({"FEDI_CONFIG": str(path), "FEDI_DELIVERY_PER_HOST": "5"})
    assert settings.base_url == "https://a.example"  # from the file
    assert settings.delivery_per_host == 5  # the environment over the file
    # --config over FEDI_CONFIG.
    other = write(tmp_path, "other.toml", 'base_url = "https://b.example"\n')
    assert load_settings({"FEDI_CONFIG": str(path)}, other).base_url == "https://b.example"


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("fedi.toml", 'base_url = "https://a.example"\nbase_ulr = "x"\n',
         "fedi.toml: base_ulr: unknown setting"),
        ("fedi.toml", 'FEDI_BASE_URL = "https://a.example"\n', "FEDI_BASE_URL: unknown setting"),
        ("fedi.toml", '[server]\nbase_url = "https://a.example"\n', "[server]: sections"),
        ("fedi.toml", 'delivery_per_host = 0\n', "fedi.toml: delivery_per_host: "
         "FEDI_DELIVERY_PER_HOST=0 must be at least 1"),
        ("fedi.toml", 'base_url = "groups.example"\n', "fedi.toml: base_url: "),
        ("fedi.toml", 'authorized_fetch = 1.5\n', "authorized_fetch: must be a string"),
        ("fedi.toml", 'base_url = "https://a.example\n', "fedi.toml: not valid TOML"),
        ("fedi.env", "# ok\nFEDI_BASE_URL=https://a.example\nFEDI_BASE_ULR=x\n",
         "fedi.env line 3: unknown setting FEDI_BASE_ULR"),
        ("fedi.env", "FEDI_DELIVERY_PER_HOST=lots\n",
         "fedi.env line 1: FEDI_DELIVERY_PER_HOST='lots' is not a whole number"),
        ("fedi.env", "\nFEDI_BASE_URL = https://a.example\n", "fedi.env line 2: not NAME=value"),
        ("fedi.env", "FEDI_INSTANCE_NAME=My groups\n", "fedi.env line 1: put a value with spaces"),
        ("fedi.env", 'FEDI_DATABASE_URL="postgresql://fedi:pa$$@db/fedi"\n',
         "fedi.env line 1: a shell would expand $"),
        ("fedi.env", "FEDI_INSTANCE_NAME='unclosed\n", "fedi.env line 1: the value's closing '"),
    ],
)
def test_a_bad_file_names_the_file_and_the_line_or_key(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config_file=path)
    assert says in caught.value.reason
    assert str(tmp_path) in caught.value.reason
    assert "\n" not in caught.value.reason


def test_a_missing_config_file_stops(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"FEDI_CONFIG": str(tmp_path / "nope.toml")})
    assert caught.value.reason == (f"the config file {tmp_path / 'nope.toml'} does not exist; "
                                   "fix --config or FEDI_CONFIG")


def test_a_value_from_the_environment_is_blamed_on_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "fedi.toml", 'delivery_per_host = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({"FEDI_DELIVERY_PER_HOST": "0"}, config_file=path)
    assert caught.value.reason == "FEDI_DELIVERY_PER_HOST=0 must be at least 1"


def _shell_reads(path: Path) -> dict[str, str]:
    """The FEDI_* variables `set -a; . FILE` exports, as the deploy guide says to load it."""
    script = f'set -a; . "{path}"; set +a; env -0'
    out = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin"}, check=True,
                         capture_output=True).stdout.decode()
    pairs = (item.partition("=") for item in out.split("\0") if item)
    return {key: value for key, _, value in pairs if key in VARIABLES}


def test_the_deploy_example_reads_the_same_in_fedi_and_the_shell() -> None:
    fedi_reads = {name: value for name, (value, _) in read_config_file(EXAMPLE).items()}
    assert fedi_reads == _shell_reads(EXAMPLE)
    assert set(fedi_reads) >= {"FEDI_BASE_URL", "FEDI_DATABASE_URL", "FEDI_INSTANCE_NAME"}
    settings = load_settings({}, config_file=EXAMPLE)
    assert settings.base_url == "https://groups.example"
    assert settings.instance_name == "Example groups"
    # The PostgreSQL URL carries a password to replace.
    assert settings.database_url == "postgresql+asyncpg://fedi:CHANGE-ME@localhost/fedi"


def test_quoting_reads_the_same_in_fedi_and_the_shell(tmp_path: Path) -> None:
    path = write(tmp_path, "quoted.env", "FEDI_INSTANCE_NAME='a \"b\" $c `d` #e'\n"
                 'export FEDI_METRICS_TOKEN="x \\"y\\" \\$z"\nFEDI_BASE_URL=https://a.example\n')
    fedi_reads = {name: value for name, (value, _) in read_config_file(path).items()}
    assert fedi_reads == _shell_reads(path)
    assert fedi_reads["FEDI_INSTANCE_NAME"] == 'a "b" $c `d` #e'
