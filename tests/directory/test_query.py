"""The directory's query: checked once, rendered per driver, parameters only."""

from __future__ import annotations

import pytest

from vwell_pbx.directory import DirectoryDsn, DirectoryQuery, DsnError, QueryError


@pytest.mark.parametrize(
    ("text", "numbered", "pyformat", "order"),
    [
        (
            "SELECT sha1 FROM u WHERE login = :login AND login2 = :login2",
            "SELECT sha1 FROM u WHERE login = $1 AND login2 = $2",
            "SELECT sha1 FROM u WHERE login = %s AND login2 = %s",
            ("login", "login2"),
        ),
        (  # a name twice keeps its number; pyformat repeats the value
            "SELECT h AS sha1 FROM u WHERE (login = :login OR mail = :login) AND fio = :login2;",
            "SELECT h AS sha1 FROM u WHERE (login = $1 OR mail = $1) AND fio = $2",
            "SELECT h AS sha1 FROM u WHERE (login = %s OR mail = %s) AND fio = %s",
            ("login", "login", "login2"),
        ),
        (  # quotes, comments, casts and a literal % are not parameters
            "WITH x AS (SELECT 1) SELECT h::text AS sha1 FROM u -- :nope\n"
            "WHERE login = :login AND note LIKE '%:x%' /* :y */ AND `a:b` = \"c:d\"",
            "WITH x AS (SELECT 1) SELECT h::text AS sha1 FROM u -- :nope\n"
            "WHERE login = $1 AND note LIKE '%:x%' /* :y */ AND `a:b` = \"c:d\"",
            "WITH x AS (SELECT 1) SELECT h::text AS sha1 FROM u -- :nope\n"
            "WHERE login = %s AND note LIKE '%%:x%%' /* :y */ AND `a:b` = \"c:d\"",
            ("login",),
        ),
        (  # a quote doubled or escaped stays inside its string
            "SELECT s AS sha1 FROM u WHERE login = :login AND t <> 'it''s :no' AND v <> 'a\\' :no'",
            "SELECT s AS sha1 FROM u WHERE login = $1 AND t <> 'it''s :no' AND v <> 'a\\' :no'",
            "SELECT s AS sha1 FROM u WHERE login = %s AND t <> 'it''s :no' AND v <> 'a\\' :no'",
            ("login",),
        ),
    ],
)
def test_a_query_is_rendered_for_each_driver(
    text: str, numbered: str, pyformat: str, order: tuple[str, ...]
) -> None:
    query = DirectoryQuery.parse(text)
    assert query.render("numbered")[0] == numbered
    assert query.render("pyformat") == (pyformat, order)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("DELETE FROM u WHERE login = :login", "SELECT"),
        ("UPDATE u SET x = 1 WHERE login = :login", "SELECT"),
        ("SELECT sha1 FROM u WHERE login = :login; DROP TABLE u", "one statement"),
        ("SELECT sha1 FROM u WHERE login = :login AND pw = :sha1", "unknown parameter :sha1"),
        ("SELECT sha1 FROM u WHERE login2 = :login2", "must use :login"),
        ("SELECT sha1 FROM u WHERE login = 'x", "not closed"),
        ("SELECT sha1 FROM u WHERE login = :login /* open", "not closed"),
        ("", "SELECT"),
    ],
)
def test_a_query_that_cannot_be_used_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        DirectoryQuery.parse(text)


def test_a_dsn_never_shows_its_password() -> None:
    dsn = DirectoryDsn.parse("mariadb://reader:s3cr%40t@db.example.com/crm")
    assert dsn.kind == "mysql"
    assert dsn.port == 3306
    assert dsn.secret() == "s3cr@t"
    assert str(dsn) == "mysql://reader@db.example.com:3306/crm"
    assert "s3cr" not in repr(dsn)
    pg = DirectoryDsn.parse("postgres://reader@[::1]:6543/crm?sslmode=require")
    assert pg.redacted() == "postgresql://reader@[::1]:6543/crm?sslmode=require"
    for bad, message in (
        ("oracle://u:secret@h/db", "unknown database kind"),
        ("mysql://u:secret@h", "a host and a database"),
        ("mysql://u:secret@h:x/db", "port"),
        ("mysql://u:secret@h/db?ssl=1", "unknown option"),
    ):
        with pytest.raises(DsnError, match=message) as info:
            DirectoryDsn.parse(bad)
        assert "secret" not in str(info.value)
