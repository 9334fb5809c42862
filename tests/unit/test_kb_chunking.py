"""Reading and cutting knowledge-base articles: no database, no model."""

from __future__ import annotations

from pathlib import Path

from agents.knowledge.chunking import (
    MAX_SECTION_CHARS,
    Article,
    Section,
    chunk_article,
    embedding_text,
    html_to_markdown,
    parse_article,
    read_article,
    split_text,
)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "sandbox" / "kb"


def test_front_matter_gives_id_and_title_and_is_not_part_of_the_body() -> None:
    raw = "---\nid: kb_export\ntitle: Exporting\n---\n# Exporting your data\n\n## To CSV\nPick CSV.\n"
    article = parse_article(raw, fallback_id="export_data", fmt="markdown")
    assert (article.id, article.title) == ("kb_export", "Exporting")
    assert "id:" not in article.body
    assert chunk_article(article) == [Section("To CSV", "Pick CSV.")]


def test_without_front_matter_id_comes_from_the_file_name_and_title_from_the_first_heading(tmp_path: Path) -> None:
    path = tmp_path / "Billing FAQ.md"
    path.write_text("# Billing questions\n\nWe bill monthly.\n")
    article = read_article(path)
    assert (article.id, article.title, article.format) == ("billing_faq", "Billing questions", "markdown")
    assert article.source == str(path)


def test_markdown_sections_keep_their_heading_path_below_the_title() -> None:
    body = (
        "# Mobile apps\n\nWorks on iOS and Android.\n\n"
        "## Offline mode\nRecent tasks are offline.\n\n"
        "### On Android\nEnable sync first.\n\n"
        "#### A detail\nStays in its section.\n\n"
        "## Notifications\nPer device.\n"
    )
    sections = chunk_article(Article(id="m", title="Mobile apps", body=body))
    assert [s.heading for s in sections] == ["", "Offline mode", "Offline mode > On Android", "Notifications"]
    assert sections[0].text == "Works on iOS and Android."
    assert "#### A detail\nStays in its section." in sections[2].text


def test_several_level_one_headings_are_sections_not_the_title() -> None:
    body = "# Part one\nFirst.\n\n# Part two\n## Detail\nSecond.\n"
    sections = chunk_article(Article(id="p", title="Parts", body=body))
    assert [s.heading for s in sections] == ["Part one", "Part two > Detail"]


def test_a_hash_inside_a_code_fence_is_not_a_heading() -> None:
    body = "## Shell\n```\n# this is a comment\necho hi\n```\n"
    [section] = chunk_article(Article(id="c", title="C", body=body))
    assert section.heading == "Shell"
    assert "# this is a comment" in section.text


def test_headings_with_no_text_under_them_make_no_section() -> None:
    body = "# T\n## Empty\n## Full\nText.\n"
    assert chunk_article(Article(id="e", title="T", body=body)) == [Section("Full", "Text.")]


def test_a_long_section_is_split_on_paragraphs_and_keeps_its_heading() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(8)]
    body = "## Long\n" + "\n\n".join(paragraphs)
    sections = chunk_article(Article(id="l", title="L", body=body))
    assert len(sections) > 1
    assert all(s.heading == "Long" for s in sections)
    assert all(len(s.text) <= MAX_SECTION_CHARS for s in sections)
    # nothing lost, nothing cut mid-paragraph
    assert [p.strip() for s in sections for p in s.text.split("\n\n")] == [p.strip() for p in paragraphs]


def test_an_overlong_paragraph_is_split_on_sentences_then_words() -> None:
    sentence = "This sentence is about exports and nothing else. "
    pieces = split_text(sentence * 60, limit=200)
    assert all(len(p) <= 200 for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert split_text("x" * 450, limit=200) == ["x" * 200, "x" * 200, "x" * 50]
    assert split_text("   ") == []


def test_plain_text_is_cut_at_blank_lines_and_its_first_line_is_the_title(tmp_path: Path) -> None:
    path = tmp_path / "shipping.txt"
    path.write_text("Shipping times\n\nOrders ship in 2 days.\n\n" + ("Long paragraph. " * 80) + "\n")
    article = read_article(path)
    assert (article.id, article.title, article.format) == ("shipping", "Shipping times", "text")
    sections = chunk_article(article)
    assert sections[0] == Section("", "Orders ship in 2 days.")
    assert all(len(s.text) <= MAX_SECTION_CHARS for s in sections)
    assert not any("Shipping times" in s.text for s in sections)


def test_html_headings_become_sections_and_scripts_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "two-factor.html"
    path.write_text(
        "<html><head><title>Two-factor authentication</title><style>h1{}</style></head><body>"
        "<nav>Home | Help</nav><h1>2FA</h1><p>Protect your account.</p>"
        "<h2>Turning it <em>on</em></h2><p>Open <b>Profile</b> &rarr; Security.</p>"
        "<ul><li>Scan the QR code</li><li>Enter the code</li></ul>"
        "<h3>Backup codes</h3><p>Save them.</p><script>alert(1)</script></body></html>"
    )
    article = read_article(path)
    assert (article.id, article.title, article.format) == ("two_factor", "Two-factor authentication", "html")
    sections = chunk_article(article)
    assert [s.heading for s in sections] == ["", "Turning it on", "Turning it on > Backup codes"]
    assert sections[1].text == "Open Profile → Security.\n\n- Scan the QR code\n- Enter the code"
    assert not any("alert" in s.text or "Home" in s.text for s in sections)


def test_html_without_a_title_tag_takes_its_first_heading() -> None:
    title, markdown = html_to_markdown("<h1>Invoices</h1><p>PDF.</p>")
    assert title == ""
    assert parse_article("<h1>Invoices</h1><p>PDF.</p>", fallback_id="inv", fmt="html").title == "Invoices"
    assert markdown == "# Invoices\n\nPDF."


def test_embedded_text_carries_title_and_heading_without_markdown_noise() -> None:
    article = Article(id="e", title="Exporting", body="")
    text = embedding_text(article, Section("Export to CSV", "Choose **Settings → Export**."))
    assert text == "Exporting: Export to CSV.\nChoose Settings → Export."


def test_every_eval_article_has_front_matter_and_bounded_sections() -> None:
    articles = [read_article(p) for p in sorted(CORPUS.glob("*.md"))]
    assert len({a.id for a in articles}) == len(articles) >= 10
    for article in articles:
        assert article.id.startswith("kb_")
        sections = chunk_article(article)
        assert sections, article.id
        assert all(0 < len(s.text) <= MAX_SECTION_CHARS for s in sections)
    export = next(a for a in articles if a.id == "kb_export_data")
    assert [s.heading for s in chunk_article(export)] == ["Export to CSV", "Export to JSON", "Full account export"]
