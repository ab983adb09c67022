"""Interface text of the WebUI in Chinese and English (emotion labels are always shown in both).

``text(key, lang)`` returns one string; ``format`` placeholders are filled by the caller.
Every key has both languages (checked by the tests).
"""

from __future__ import annotations

from typing import Literal

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
DEFAULT_LANGUAGE: Language = "zh"
#: What the language switch shows for each language.
LANGUAGE_NAMES: dict[Language, str] = {"zh": "中文", "en": "English"}

TEXT: dict[str, dict[Language, str]] = {
    # page
    "title": {"zh": "emotion2vec+ 语音情感识别", "en": "emotion2vec+ speech emotion recognition"},
    "subtitle": {
        "zh": "上传或录制语音，识别 9 种情感并提取情感向量（embedding）。模型：{model}",
        "en": "Upload or record speech to recognise 9 emotions and extract emotion embeddings. Model: {model}",
    },
    "language": {"zh": "界面语言 / Language", "en": "Language / 界面语言"},
    "tab_recognise": {"zh": "识别", "en": "Recognise"},
    "tab_batch": {"zh": "批量", "en": "Batch"},
    "tab_compare": {"zh": "比较", "en": "Compare"},
    "tab_explore": {"zh": "探索", "en": "Explore"},
    "tab_live": {"zh": "实时", "en": "Live"},
    "tab_history": {"zh": "历史", "en": "History"},
    # recognise: inputs
    "audio_input": {"zh": "音频（上传 wav/mp3/m4a/flac/ogg/webm 或录音）",
                    "en": "Audio (upload wav/mp3/m4a/flac/ogg/webm, or record)"},
    "examples": {"zh": "示例音频", "en": "Sample clips"},
    "granularity": {"zh": "粒度", "en": "Granularity"},
    "granularity_utterance": {"zh": "整句 utterance", "en": "utterance (whole clip)"},
    "granularity_frame": {"zh": "逐帧 frame", "en": "frame (emotion over time)"},
    "extract_embedding": {"zh": "提取情感向量（embedding.npy）", "en": "Extract embedding (embedding.npy)"},
    "model": {"zh": "模型", "en": "Model"},
    "model_info": {"zh": "内置模型 compact 离线可用；已下载到本机的 emotion2vec+ 模型也会列出",
                   "en": "The bundled compact model works offline; emotion2vec+ models cached on this machine are listed too"},
    "start": {"zh": "开始识别", "en": "Recognise"},
    # recognise: results
    "result": {"zh": "识别结果", "en": "Result"},
    "result_placeholder": {"zh": "上传音频后点击“开始识别”", "en": "Upload audio, then press Recognise"},
    "confidence": {"zh": "置信度", "en": "confidence"},
    "scores_plot": {"zh": "9 类情感得分", "en": "Scores of the 9 emotions"},
    "timeline_plot": {"zh": "情感随时间变化", "en": "Emotion over time"},
    "chart_band": {"zh": "主要情感（高度 = 置信度）", "en": "Dominant emotion (height = confidence)"},
    "chart_curves": {"zh": "各类概率曲线", "en": "Class probabilities"},
    "chart_curves_toggle": {"zh": "显示/隐藏各类曲线", "en": "Show/hide class curves"},
    "chart_percent": {"zh": "置信度 / 概率 (%)", "en": "confidence / probability (%)"},
    "segments": {"zh": "分段", "en": "Segments"},
    "col_start": {"zh": "开始 (s)", "en": "start (s)"},
    "col_end": {"zh": "结束 (s)", "en": "end (s)"},
    "col_emotion": {"zh": "情感", "en": "emotion"},
    "col_confidence": {"zh": "置信度", "en": "confidence"},
    "embedding_notice": {"zh": "已生成情感向量 Embedding generated: {name} {shape}",
                         "en": "Embedding generated: {name} {shape}"},
    "downloads": {"zh": "下载本次结果", "en": "Download this run's files"},
    "log": {"zh": "处理日志", "en": "Processing log"},
    "log_file": {"zh": "文件", "en": "file"},
    "log_format": {"zh": "原始格式", "en": "original format"},
    "log_audio": {"zh": "{format}，{rate} Hz，{channels} 声道，{duration:.2f} 秒",
                  "en": "{format}, {rate} Hz, {channels} channel(s), {duration:.2f} s"},
    "log_model": {"zh": "模型", "en": "model"},
    "log_granularity": {"zh": "粒度", "en": "granularity"},
    "log_time": {"zh": "耗时", "en": "time taken"},
    "log_saved": {"zh": "保存到", "en": "saved to"},
    "log_warning": {"zh": "注意", "en": "warning"},
    "log_failed": {"zh": "失败", "en": "failed"},
    "warn_silent": {"zh": "音频几乎无声，结果没有参考价值", "en": "the audio is almost silent; the result is not meaningful"},
    "warn_clipped": {"zh": "录音削波失真，结果可能不太可靠", "en": "the recording is clipped (distorted); the result may be less reliable"},
    "no_head": {"zh": "该模型没有情感分类头，只输出情感向量", "en": "This model has no emotion classifier; it only gives embeddings"},
    "loading_model": {"zh": "正在加载模型 {model}…", "en": "Loading model {model}…"},
    "recognising": {"zh": "正在识别…", "en": "Recognising…"},
    # errors
    "error_title": {"zh": "无法处理", "en": "Could not process"},
    "error_no_audio": {"zh": "请先上传或录制一段音频。", "en": "Please upload or record a clip first."},
    "error_no_files": {"zh": "请先选择文件。", "en": "Please choose some files first."},
    "error_too_large": {"zh": "{name}：文件 {size:.1f} MB，超过本服务器的上传上限 {limit:g} MB（启动服务器时的 --max-upload-mb）。",
                        "en": "{name}: the file is {size:.1f} MB, above this server's upload limit of {limit:g} MB "
                              "(set when the server is started: --max-upload-mb)."},
    "error_unexpected": {"zh": "内部错误（{kind}）。页面仍可继续使用。",
                         "en": "Internal error ({kind}). The page is still usable."},
    "error_details": {"zh": "详细信息（程序原文）", "en": "details"},
    "error_not_found": {"zh": "{name}：找不到该文件，请重新上传。", "en": "{name}: the file is gone; please upload it again."},
    "error_not_audio": {"zh": "{name}：不是音频文件。可以上传 wav、mp3、m4a、flac、ogg/opus 或 webm。",
                        "en": "{name}: not an audio file. Upload wav, mp3, m4a, flac, ogg/opus or webm."},
    "error_list_file": {"zh": "{name}：这是路径列表（{suffix} 文件），不是音频。请直接上传音频文件。",
                        "en": "{name}: a list of paths (a {suffix} file), not audio. Upload the audio files themselves."},
    "error_corrupt": {"zh": "{name}：文件已损坏或不完整，无法解码。请重新导出或录制后再试。",
                      "en": "{name}: the file is damaged or cut short and cannot be decoded. Export or record it again."},
    "error_empty": {"zh": "{name}：文件中没有音频。", "en": "{name}: the file holds no audio."},
    "error_too_short": {"zh": "{name}：音频太短（不足 25 毫秒）。", "en": "{name}: the audio is too short (under 25 ms)."},
    "error_too_long": {"zh": "{name}：音频超过本服务器的时长上限 {limit:g} 秒。请剪成较短的片段，或在启动服务器时用 --max-duration 调高上限。",
                       "en": "{name}: the audio is longer than this server's limit of {limit:g} s. Cut it into shorter "
                             "parts, or start the server with a higher --max-duration."},
    "error_too_long_known": {"zh": "{name}：音频长 {duration:.1f} 秒，超过本服务器的时长上限 {limit:g} 秒。请剪成较短的片段，或在启动服务器时用 --max-duration 调高上限。",
                             "en": "{name}: the audio is {duration:.1f} s long, above this server's limit of {limit:g} s. "
                                   "Cut it into shorter parts, or start the server with a higher --max-duration."},
    "error_invalid_samples": {"zh": "{name}：音频含有无效的采样值（非数字或无穷大）。",
                              "en": "{name}: the audio holds invalid samples (not-a-number or infinite values)."},
    "error_audio": {"zh": "{name}：无法读取该音频。", "en": "{name}: the audio cannot be read."},
    "error_file_failed": {"zh": "{name}：无法处理。", "en": "{name}: could not be processed."},
    "error_embedding": {"zh": "{name}：不是可用的 .npy 情感向量文件。", "en": "{name}: not a usable .npy embedding."},
    "error_pickle": {"zh": "{name}：已拒绝：该 .npy 文件包含 Python 对象（pickle），读取它可能执行代码。请把向量保存为普通数值数组。",
                     "en": "{name}: refused: the .npy file holds Python objects (pickle), which could run code when read. "
                           "Save the embedding as a plain array of numbers."},
    "error_dimension_model": {"zh": "{name}：这是 {dim} 维向量，而模型 {model} 输出 {model_dim} 维向量。请在“模型”中选择生成它的模型。",
                              "en": "{name}: this embedding is {dim}-d but the model {model} gives {model_dim}-d "
                                    "embeddings. Choose the model that made it (Model)."},
    "error_dimension_pair": {"zh": "{name} 是 {dim} 维，{other} 是 {other_dim} 维：不同维度的向量来自不同模型，无法比较。",
                             "en": "{name} is {dim}-d but {other} is {other_dim}-d: embeddings of different sizes come "
                                   "from different models and cannot be compared."},
    "error_index": {"zh": "{name}：不是可用的 embeddings.parquet（由“批量”生成）。",
                    "en": "{name}: not a usable embeddings.parquet (Batch writes one)."},
    "error_model": {"zh": "无法加载或运行模型。", "en": "The model could not be loaded or run."},
    "error_model_unavailable": {"zh": "模型 {model} 在本服务器上不可用，请从列表中选择。",
                                "en": "The model {model} is not available on this server; choose one from the list."},
    "error_explore_too_few": {"zh": "至少需要 2 个可读取的片段才能画图（现在 {n} 个）。",
                              "en": "A map needs at least 2 clips that can be read (now {n})."},
    # batch
    "batch_intro": {"zh": "一次识别多个文件；结果可下载为 CSV、JSONL，情感向量为 Parquet 或 .npy 压缩包。",
                    "en": "Recognise many files at once; download the results as CSV or JSONL and the embeddings as Parquet or a zip of .npy files."},
    "batch_files": {"zh": "音频文件（可多选）", "en": "Audio files (choose several)"},
    "batch_start": {"zh": "开始批量识别", "en": "Run batch"},
    "batch_table": {"zh": "批量结果", "en": "Batch results"},
    "batch_summary": {"zh": "完成 {done} 个，失败 {failed} 个，用时 {seconds:.1f} 秒。结果目录：{folder}",
                      "en": "{done} done, {failed} failed in {seconds:.1f} s. Results folder: {folder}"},
    "batch_downloads": {"zh": "下载：results.csv、results.jsonl、embeddings.parquet、embeddings_npy.zip",
                        "en": "Downloads: results.csv, results.jsonl, embeddings.parquet, embeddings_npy.zip"},
    "col_file": {"zh": "文件", "en": "file"},
    "col_duration": {"zh": "时长 (s)", "en": "duration (s)"},
    "col_status": {"zh": "状态 / 错误", "en": "status / error"},
    "status_ok": {"zh": "完成 ok", "en": "ok"},
    "batch_progress": {"zh": "批量识别中", "en": "Running batch"},
    "batch_to_explore": {"zh": "在“探索”中查看这些向量", "en": "Explore these embeddings"},
    # compare
    "compare_intro": {"zh": "比较两段音频（或两个 .npy 情感向量）的余弦相似度。",
                      "en": "Compare two clips (or two .npy embeddings) by cosine similarity."},
    "compare_a": {"zh": "A：音频或 .npy", "en": "A: audio or .npy"},
    "compare_b": {"zh": "B：音频或 .npy", "en": "B: audio or .npy"},
    "compare_start": {"zh": "比较", "en": "Compare"},
    "compare_result": {"zh": "比较结果", "en": "Comparison"},
    "similarity": {"zh": "余弦相似度", "en": "cosine similarity"},
    "compare_uncalibrated": {
        "zh": "注意：解读区间是用内置 compact 模型（{calibrated} 维）校准的；{dim} 维向量请只在同一模型的结果之间比较数值。",
        "en": "Note: the reading is calibrated on the bundled compact model ({calibrated}-d); for {dim}-d embeddings compare values with each other only.",
    },
    "compare_reading_note": {"zh": "（按不同说话人的片段对测得；同一说话人的两段音频通常相似度更高。）",
                             "en": "(Measured on pairs of clips by two different speakers; two clips of one speaker "
                                   "usually score higher.)"},
    "kind_audio": {"zh": "音频", "en": "audio"},
    "kind_embedding": {"zh": ".npy 向量", "en": ".npy embedding"},
    "no_emotion": {"zh": "（无情感：向量维度与当前模型不符）", "en": "(no emotion: the embedding does not fit the current model)"},
    # explore
    "explore_intro": {"zh": "把一组音频或批量生成的 embeddings.parquet 画成 UMAP 二维图，并用 HDBSCAN 聚类。",
                      "en": "Map a set of clips, or an embeddings.parquet from Batch, in 2-D with UMAP and group them with HDBSCAN."},
    "explore_files": {"zh": "多个音频文件，或一个 embeddings.parquet", "en": "Several audio files, or one embeddings.parquet"},
    "explore_min_cluster": {"zh": "最小簇大小（0 = 按片段数量自动选择）", "en": "Smallest cluster (0 = chosen for the number of clips)"},
    "explore_colour": {"zh": "着色", "en": "Colour by"},
    "colour_cluster": {"zh": "聚类 cluster", "en": "cluster"},
    "colour_emotion": {"zh": "预测情感 emotion", "en": "predicted emotion"},
    "explore_start": {"zh": "生成地图", "en": "Make the map"},
    "explore_map": {"zh": "情感向量地图", "en": "Embedding map"},
    "explore_table": {"zh": "聚类", "en": "Clusters"},
    "explore_summary": {"zh": "{n} 个向量（{dim} 维）：{clusters} 个簇，{noise} 个噪声点",
                        "en": "{n} embeddings ({dim}-d): {clusters} clusters, {noise} noise"},
    "explore_size_auto": {"zh": "最小簇大小 {size}（按 {n} 个片段自动选择）", "en": "smallest cluster {size} (chosen for {n} clips)"},
    "explore_size_given": {"zh": "最小簇大小 {size}", "en": "smallest cluster {size}"},
    "explore_all_noise": {"zh": "没有找到簇：所有点都是噪声。可以把最小簇大小调小再试。",
                          "en": "No cluster found: every point is noise. Try a smaller cluster size."},
    "explore_pca": {"zh": "{n} 个向量（{dim} 维），用 PCA 画图：UMAP 和聚类至少需要 5 个片段，所以这些片段没有分组。",
                    "en": "{n} embeddings ({dim}-d), drawn with PCA: UMAP and clustering need at least 5 clips, so these are not grouped."},
    "not_grouped": {"zh": "未分组", "en": "not grouped"},
    "col_cluster": {"zh": "簇", "en": "cluster"},
    "col_size": {"zh": "数量", "en": "size"},
    "col_dominant": {"zh": "主要情感", "en": "dominant emotion"},
    "col_members": {"zh": "成员", "en": "members"},
    "noise": {"zh": "噪声", "en": "noise"},
    "no_speech": {"zh": "无语音", "en": "no speech"},
    "explore_mixed": {"zh": "请上传音频文件，或只上传一个 .parquet 文件。",
                      "en": "Upload audio files, or a single .parquet file on its own."},
    # live
    "live_intro": {"zh": "点击“录制”后说话：每 0.5 秒更新最近 3 秒的情感；每句话在停顿后得到最终结果。"
                         "保存本次会话可保留音频、全部事件和每句话的情感向量。",
                   "en": "Press Record and speak: the emotion of the last 3 s is updated every 0.5 s, and each "
                         "sentence gets its final label when you pause. Save the session to keep its audio, every "
                         "event and each sentence's embedding."},
    "live_mic": {"zh": "麦克风", "en": "Microphone"},
    "live_waiting": {"zh": "点击“录制”开始", "en": "Press Record to start"},
    "live_now": {"zh": "当前（最近 3 秒）", "en": "now (last 3 s)"},
    "live_silence": {"zh": "静音（没有语音）", "en": "silence (no speech)"},
    "live_listening": {"zh": "正在听…", "en": "listening…"},
    "live_chart": {"zh": "最近 60 秒", "en": "The last 60 seconds"},
    "live_curves": {"zh": "各类概率（最近 3 秒）", "en": "Class probabilities (last 3 s)"},
    "live_finals": {"zh": "句子（最终结果，最新在前）", "en": "Utterances (final labels, newest first)"},
    "col_span": {"zh": "时间 (s)", "en": "time (s)"},
    "live_status_recording": {"zh": "正在识别：{duration:.1f} 秒，{utterances} 句（麦克风 {rate} Hz，模型 {model}）",
                              "en": "Listening: {duration:.1f} s from the microphone at {rate} Hz, model {model}; "
                                    "utterances: {utterances}"},
    "live_status_stopped": {"zh": "已停止：{duration:.1f} 秒，{utterances} 句。可以保存本次会话。",
                            "en": "Stopped: {duration:.1f} s, utterances: {utterances}. Save the session to keep it."},
    "live_finals_more": {"zh": "列表只显示最新 {shown} 句（共 {total} 句）；保存后全部在 events.jsonl 中。",
                         "en": "The list shows the newest {shown} utterances ({total} in all); all are in events.jsonl when saved."},
    "live_save": {"zh": "保存本次会话", "en": "Save session"},
    "live_saved": {"zh": "已保存到 {folder}：{utterances} 句，{duration:.1f} 秒",
                   "en": "Saved to {folder}: {utterances} utterances, {duration:.1f} s"},
    "live_files": {"zh": "本次会话的文件", "en": "This session's files"},
    "error_live_nothing": {"zh": "还没有可以保存的内容：请先录音。", "en": "Nothing to save yet: record something first."},
    "error_live_limit": {"zh": "已达到本服务器每次实时会话的上限 {minutes:g} 分钟（启动服务器时的 --live-max-minutes），之后的声音不再识别。请停止录制并保存。",
                         "en": "This session reached this server's limit of {minutes:g} min (--live-max-minutes when "
                               "the server is started); later audio is not recognised. Stop and save it."},
    "error_live_busy": {"zh": "服务器太忙，有 {seconds:.1f} 秒声音没能识别（也没有保存）。",
                        "en": "The server was too busy: {seconds:.1f} s of audio could not be recognised (nor saved)."},
    "error_live_missed": {"zh": "录制的 {recorded:.1f} 秒中有 {seconds:.1f} 秒声音没有到达服务器（浏览器、网络或服务器跟不上时，"
                                "Gradio 会丢弃麦克风的声音）；图表和句子的时间是收到的声音的时间。",
                          "en": "{seconds:.1f} s of the {recorded:.1f} s recorded did not reach the server (Gradio drops "
                                "microphone audio when the browser, the network or the server falls behind); the "
                                "chart and the utterances are timed in the audio that arrived."},
    "error_live_chunk": {"zh": "麦克风传来的一段声音无法读取，已跳过。", "en": "A piece of the microphone's audio could not be read and was skipped."},
    "error_live_rate": {"zh": "麦克风的采样率在录制中从 {rate} Hz 变为 {new_rate} Hz；请停止后重新录制。",
                        "en": "The microphone's rate changed from {rate} Hz to {new_rate} Hz while recording; stop and record again."},
    "error_live_no_head": {"zh": "模型 {model} 没有情感分类头，无法实时识别情感；请在“识别”页选择其他模型。",
                           "en": "The model {model} has no emotion classifier, so it cannot recognise emotion live; "
                                 "choose another model on the Recognise tab."},
    # history
    "history_intro": {"zh": "输出目录中之前的识别、批量和实时会话记录（最新在前）。",
                      "en": "Earlier recognitions, batch runs and live sessions in the outputs folder, newest first."},
    "history_refresh": {"zh": "刷新", "en": "Refresh"},
    "history_table": {"zh": "记录", "en": "Earlier runs"},
    "history_pick": {"zh": "选择一条记录以下载其文件", "en": "Pick a run to download its files"},
    "history_files": {"zh": "该记录的文件", "en": "Files of that run"},
    "col_time": {"zh": "时间", "en": "time"},
    "col_kind": {"zh": "类型", "en": "kind"},
    "col_what": {"zh": "文件", "en": "file(s)"},
    "kind_recognition": {"zh": "识别", "en": "recognition"},
    "kind_batch": {"zh": "批量", "en": "batch"},
    "history_batch_files": {"zh": "{items} 个文件，{failed} 个失败", "en": "{items} files, {failed} failed"},
    "kind_live": {"zh": "实时", "en": "live"},
    "history_live": {"zh": "{items} 句，{duration:.1f} 秒", "en": "{items} utterances, {duration:.1f} s"},
    "col_folder": {"zh": "目录", "en": "folder"},
    "col_links": {"zh": "下载", "en": "files"},
    "history_empty": {"zh": "还没有记录。", "en": "No runs yet."},
}

#: Chinese readings of :data:`emotion2vec_plus.analytics.SIMILARITY_BANDS` (keyed by the English text).
SIMILARITY_READINGS_ZH: dict[str, str] = {
    "practically identical (the same clip, or the same embedding saved twice)": "几乎相同（同一段音频，或同一个向量保存了两次）",
    "higher than 97% of pairs of clips with different emotions; 1 in 6 pairs with the same emotion reach it: "
    "a sign of the same emotion": "高于 97% 的不同情感片段对；相同情感的片段对约六分之一能达到：表明情感相同",
    "reached by 1 in 3 pairs of clips with the same emotion and 1 in 14 with different emotions: a hint of the "
    "same emotion": "相同情感的片段对约三分之一能达到，不同情感的约十四分之一：略微提示情感相同",
    "reached by 3 in 4 pairs of clips with the same emotion and 1 in 3 with different emotions: says little":
        "相同情感的片段对约四分之三能达到，不同情感的约三分之一：说明不了什么",
    "about twice as common for pairs of clips with different emotions as for the same emotion: says little, "
    "leaning to different emotions": "不同情感的片段对落在这里的约为相同情感的两倍：说明不了什么，略偏向情感不同",
    "lower than 24 in 25 pairs of clips with the same emotion: a hint of different emotions":
        "低于 96% 的相同情感片段对：略微提示情感不同",
    "lower than 99% of pairs of clips with the same emotion: a sign of different emotions":
        "低于 99% 的相同情感片段对：表明情感不同",
}


def text(key: str, lang: str) -> str:
    """The interface string ``key`` in ``lang`` (``"zh"`` or ``"en"``; anything else is Chinese)."""
    entry = TEXT[key]
    return entry["en"] if lang == "en" else entry["zh"]


def similarity_reading(reading: str, lang: str) -> str:
    """A reading from :func:`~emotion2vec_plus.analytics.describe_similarity` in ``lang``."""
    if lang == "en":
        return reading
    return SIMILARITY_READINGS_ZH.get(reading, reading)


def language_of_tag(tag: str | None) -> Language | None:
    """``"zh"`` or ``"en"`` for a language tag such as ``zh-CN`` or ``en-US;q=0.9``, else None."""
    wanted = (tag or "").split(";")[0].strip().lower()
    return "zh" if wanted.startswith("zh") else "en" if wanted.startswith("en") else None


def pick_language(query_lang: str | None, accept_language: str | None, default: Language = DEFAULT_LANGUAGE) -> Language:
    """The page language: ``?lang=`` wins, then the browser's first zh/en preference; a browser that
    asks for other languages only gets English; no preference at all (no header) gets ``default``."""
    tags = [tag for tag in (accept_language or "").split(",") if tag.split(";")[0].strip() not in ("", "*")]
    for tag in [query_lang, *tags]:
        language = language_of_tag(tag)
        if language is not None:
            return language
    return "en" if tags else default
