"""Landing pages: same-host data links and pages, nothing else."""

from earthkeep.rescue.scrape import extract_links

PAGE = """<html><body>
<a href="/files/a.csv">a</a> <a href="b.nc#part">b</a> <a href="sub/more.html">more</a>
<a href="https://other.example.org/c.csv">elsewhere</a> <a href="mailto:x@y">mail</a> <a href="#top">top</a>
<a href="javascript:void(0)">js</a> <a href="/files/a.csv">again</a> <a>no href</a>
</body></html>"""


def test_same_host_links_only():
    files, pages = extract_links(PAGE, "http://data.example.gov/pages/org/p.html")
    assert files == ["http://data.example.gov/files/a.csv", "http://data.example.gov/pages/org/b.nc"]
    assert pages == ["http://data.example.gov/pages/org/sub/more.html"]


def test_garbage_html_gives_nothing():
    assert extract_links("<<<>>>\x00 not html", "http://h/p.html") == ([], [])
