"""Fifty real espeak-ng speech clips, 0.3-8 s, English and Mandarin, short and long.

Shared by tests/test_dsp.py (independent-meter check) and bench/loudness.py (which puts
this directory on ``sys.path``). Rendering is real, offline espeak-ng: nothing downloaded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from greetkit.engines import get_engine
from greetkit.engines.base import RenderRequest

_EN = (
    "Hi!", "Okay.", "Yes.", "Hello.", "Thanks!",
    "Good morning.", "Hi, I'm Xiaozhi.", "How can I help?",
    "Hi! I'm Xiaozhi! How can I help you today?",
    "Welcome back, it's nice to hear from you again.",
    "Please hold on for just a moment while I look that up.",
    "Sorry, I didn't catch that. Could you say it once more?",
    "Hello there! I'm your friendly assistant, and I'm here to help with anything you need.",
    "Good evening. Your order has shipped and should arrive on Thursday before noon.",
    "Let's play a game! I'll think of an animal, and you try to guess what it is.",
    "Thank you for calling. All of our agents are busy right now, but your call is "
    "important to us.",
    "Today the weather will be sunny with a light breeze, and a high of twenty four degrees.",
    "Bye!", "Sure thing.", "One moment.",
    "I can set timers, answer questions, tell stories, and play music for you.",
    "Great job! You finished the whole puzzle all by yourself. Do you want to try a harder "
    "one?",
    "Hmm, let me think.", "That's a great question.",
    "Remember to drink some water and take a short break every hour or so.",
)
_ZH = (
    "嗨！", "好的。", "是的。", "你好。", "谢谢！",
    "早上好。", "我是小智。", "有什么可以帮你？",
    "你好！我是小智，很高兴见到你。",
    "欢迎回来，今天过得怎么样？",
    "请稍等一下，我马上帮你查一查。",
    "对不起，我没有听清楚，请再说一遍。",
    "你好呀！我是你的小助手，有什么问题都可以问我，我会尽力帮助你。",
    "今天天气晴朗，微风，最高气温二十四度，适合出门散步。",
    "我们来玩一个游戏吧！我想一种动物，你来猜猜它是什么。",
    "感谢您的来电，目前所有客服都在忙，请您耐心等待，我们会尽快为您服务。",
    "再见！", "没问题。", "稍等。",
    "我可以帮你定闹钟，回答问题，讲故事，还可以放音乐。",
    "太棒了！你自己完成了整个拼图，要不要试一个更难的？",
    "嗯，让我想一想。", "这是个好问题。",
    "记得多喝水，每隔一个小时左右休息一下。",
    "晚上好，您的包裹已经发货，预计星期四中午之前送达，请注意查收。",
)

#: (language, espeak voice, text) for the fifty clips.
CLIPS: tuple[tuple[str, str, str], ...] = tuple(
    [("en", "en", t) for t in _EN] + [("zh", "cmn", t) for t in _ZH]
)


@dataclass(frozen=True)
class SpeechClip:
    """One rendered clip at espeak's own rate."""

    name: str
    language: str
    text: str
    samples: npt.NDArray[np.float32]
    sample_rate: int

    @property
    def duration(self) -> float:
        return float(self.samples.shape[0]) / self.sample_rate


def render_clips(limit: int | None = None) -> list[SpeechClip]:
    """Render the clips (all fifty, or the first ``limit`` of each language interleaved)."""
    engine = get_engine("espeak")
    chosen = list(CLIPS)
    if limit is not None:
        chosen = [c for pair in zip(CLIPS[: len(_EN)], CLIPS[len(_EN):], strict=False)
                  for c in pair][:limit]

    async def render_all() -> list[SpeechClip]:
        out = []
        for i, (language, voice, text) in enumerate(chosen):
            audio = await engine.render(RenderRequest(key=f"clip{i}", text=text,
                                                      language=language, voice=voice))
            out.append(SpeechClip(f"{language}{i:02d}", language, text, audio.samples,
                                  audio.sample_rate))
        return out

    return asyncio.run(render_all())
