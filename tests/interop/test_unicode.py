"""Non-ASCII text in args, kwargs and results, through tasks.echo."""

import json

import pytest

from support import publish_task_v2, task_body_v2

TEXTS = {
    "latin": "héllo wörld, ça va? ñ ß",
    "greek-cyrillic": "αβγ δ — Привет, мир",
    "cjk": "日本語のテキスト 中文 한국어",
    "emoji": "😀🎉👍🏽 👩‍👩‍👧",
    "rtl": "שלום עולם مرحبا",
    "combining": "e\u0301 a\u0308",
    "bmp-edge": "\uffff\ufffd",
    "astral": "\U0001f600\U0010ffff",
}


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_echo_unicode_arg(run, text):
    assert run("tasks.echo", text) == text


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_echo_unicode_kwarg(run, text):
    assert run("tasks.echo", value=text) == text


def test_echo_unicode_dict_keys(run):
    value = {"ключ": "значение", "鍵": ["値", "😀"], "emoji 🎉": {"ñ": 1}}
    assert run("tasks.echo", value) == value


def test_echo_control_characters(run):
    value = "".join(chr(code) for code in range(1, 32)) + "\u007f"
    assert run("tasks.echo", value) == value


def test_echo_string_with_nul(run):
    assert run("tasks.echo", "before\u0000after") == "before\u0000after"


def test_echo_unescaped_utf8_body(worker, reply_queue):
    # Python's JSON writer escapes non-ASCII, so this body sends raw UTF-8
    # bytes, as other Celery clients do.
    text = TEXTS["emoji"] + TEXTS["cjk"]
    task_id = publish_task_v2(
        worker.queue, "tasks.echo", reply_to=reply_queue.name,
        body=task_body_v2([text], ensure_ascii=False),
    )
    messages = reply_queue.wait_for(task_id)
    final = messages[-1]
    assert final["status"] == "SUCCESS"
    assert final["result"] == text


def test_echo_unicode_result_is_valid_json(worker, reply_queue):
    text = TEXTS["astral"] + TEXTS["rtl"]
    task_id = publish_task_v2(worker.queue, "tasks.echo", args=[text],
                              reply_to=reply_queue.name)
    messages = reply_queue.wait_for(task_id)
    assert json.loads(json.dumps(messages[-1]))["result"] == text
