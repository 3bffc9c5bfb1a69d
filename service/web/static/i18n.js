// The page's own words in English and Chinese. The novel's text is shown as it is, with a
// `lang` attribute of its own (see dom.js textLang).

const STRINGS = {
  en: {
    brand: "Storyboard",
    label: "{label}: ",
    "nav.new": "New novel",
    "nav.work": "My work",
    "nav.signOut": "Sign out",
    "nav.language": "中文",
    "nav.languageLabel": "Switch the page to Chinese",
    "upload.heading": "Turn a novel into a storyboard",
    "upload.intro": "Upload a plain-text novel, watch the analysis, then read it as comic pages.",
    "upload.title": "Title",
    "upload.titleHint": "Optional: without one, the text's first line is the title.",
    "upload.file": "Novel file (.txt)",
    "upload.drop": "Drop a .txt file here, or choose one",
    "upload.fileHint": "UTF-8, GB18030 or UTF-16 with a byte-order mark; the server detects the encoding.",
    "upload.clearFile": "Remove the file",
    "upload.text": "…or paste the text",
    "upload.submit": "Upload and analyze",
    "upload.uploading": "Uploading…",
    "upload.starting": "Starting the analysis…",
    "upload.nothing": "Choose a file or paste some text first.",
    "upload.chosen": "{name} · {size}",
    "job.heading": "Analysis",
    "job.of": "of “{title}”",
    "job.progress": "Progress",
    "job.status": "Status",
    "job.stage": "Stage",
    "job.attempts": "Attempts",
    "job.created": "Started",
    "job.updated": "Updated",
    "job.line": "{status} · {percent} % · {stage}",
    "job.cancel": "Cancel the job",
    "job.cancelling": "Cancelling…",
    "job.read": "Read the storyboard",
    "job.again": "Analyze again",
    "job.retrying": "Attempt {attempts} failed: {error}. Next attempt at {time} ({countdown}).",
    "job.retryingSoon": "Attempt {attempts} failed: {error}. Retrying soon.",
    "job.failed": "The job failed: {code}: {message}",
    "job.cancelled": "The job was cancelled.",
    "job.completed": "Done: {chapters} chapters, {scenes} scenes, {panels} panels, {characters} characters.",
    "job.history": "What happened",
    "job.nextAttempt": "next attempt at {time}",
    "job.reconnecting": "Connection lost; reconnecting…",
    "job.inSeconds": "in {seconds} s",
    "job.now": "any moment",
    "status.queued": "Queued",
    "status.running": "Running",
    "status.retrying": "Retrying",
    "status.completed": "Completed",
    "status.failed": "Failed",
    "status.cancelled": "Cancelled",
    "reader.meta": "{chapters} chapters · {scenes} scenes · {panels} panels · {characters} characters",
    "reader.madeBy": "Made by the {analyzer} analyzer",
    "reader.export": "Download JSON",
    "reader.print": "Print / PDF",
    "reader.chapters": "Chapters",
    "reader.chapter": "Chapter",
    "reader.prev": "Previous chapter",
    "reader.next": "Next chapter",
    "reader.chapterOption": "{index}. {title}",
    "reader.chapterInfo": "Chapter {index} of {count} · {scenes} scenes · {panels} panels",
    "reader.scene": "Scene {number}",
    "reader.location": "Location",
    "reader.panel": "Panel {number}",
    "reader.inPanel": "In this panel",
    "reader.prompt": "Image prompt",
    "reader.hidePrompt": "Hide the prompt",
    "reader.copy": "Copy",
    "reader.copied": "Copied to the clipboard.",
    "reader.copyFailed": "Could not copy; the prompt is selected, press Ctrl+C.",
    "reader.narrator": "Narrator",
    "reader.unknownSpeaker": "? (unknown speaker)",
    "reader.cast": "Cast",
    "reader.castHint": "Select a character to highlight their panels.",
    "reader.aliases": "Also: {aliases}",
    "reader.appearance": "Appearance",
    "reader.castCount": "{count} panels in this chapter",
    "reader.castOne": "1 panel in this chapter",
    "reader.castAbsent": "Not in this chapter",
    "reader.highlighted": "{name} is in {count} of {total} panels of this chapter.",
    "reader.cleared": "No character highlighted.",
    "reader.empty": "This storyboard has no scenes.",
    "reader.pending": "The storyboard is not ready yet.",
    "reader.followJob": "Follow the job",
    "shot.establishing": "Establishing shot",
    "shot.wide": "Wide shot",
    "shot.medium": "Medium shot",
    "shot.close-up": "Close-up",
    "shot.extreme-close-up": "Extreme close-up",
    "shot.over-the-shoulder": "Over the shoulder",
    "work.heading": "My work",
    "work.novels": "Novels",
    "work.jobs": "Jobs",
    "work.more": "Load more",
    "work.none": "Nothing yet.",
    "work.novelMeta": "{chars} characters · uploaded {created}",
    "work.latest": "Latest job:",
    "work.jobMeta": "{type} · {percent} % · {created}",
    "work.read": "Read",
    "work.follow": "Follow",
    "work.analyze": "Analyze again",
    "work.delete": "Delete",
    "work.confirmDelete": "Delete “{title}”, its jobs and its storyboards? This cannot be undone.",
    "work.deleted": "Deleted “{title}”.",
    "auth.heading": "Sign in",
    "auth.explain":
      "This service needs an API key or token. It is kept in this browser tab only and sent in the Authorization header, never in a URL.",
    "auth.refused": "That key or token was refused. Try another.",
    "auth.label": "API key or token",
    "auth.submit": "Sign in",
    "auth.cancel": "Cancel",
    "error.network": "The service could not be reached. Check your connection and try again.",
    "error.generic": "Something went wrong: {message}",
    "error.unauthorized": "Signing in is needed for this.",
    notFound: "There is nothing at this address.",
    back: "Back to the start",
  },
  zh: {
    brand: "分镜",
    label: "{label}：",
    "nav.new": "上传小说",
    "nav.work": "我的作品",
    "nav.signOut": "退出登录",
    "nav.language": "English",
    "nav.languageLabel": "Switch the page to English",
    "upload.heading": "把小说变成分镜",
    "upload.intro": "上传纯文本小说，实时查看分析进度，然后像翻漫画一样阅读分镜。",
    "upload.title": "标题",
    "upload.titleHint": "可不填：不填时以正文第一行作标题。",
    "upload.file": "小说文件（.txt）",
    "upload.drop": "把 .txt 文件拖到这里，或点击选择",
    "upload.fileHint": "支持 UTF-8、GB18030，以及带字节顺序标记的 UTF-16；编码由服务器识别。",
    "upload.clearFile": "移除文件",
    "upload.text": "……或直接粘贴正文",
    "upload.submit": "上传并分析",
    "upload.uploading": "正在上传……",
    "upload.starting": "正在开始分析……",
    "upload.nothing": "请先选择文件或粘贴正文。",
    "upload.chosen": "{name} · {size}",
    "job.heading": "分析任务",
    "job.of": "《{title}》",
    "job.progress": "进度",
    "job.status": "状态",
    "job.stage": "阶段",
    "job.attempts": "尝试次数",
    "job.created": "开始于",
    "job.updated": "更新于",
    "job.line": "{status} · {percent}% · {stage}",
    "job.cancel": "取消任务",
    "job.cancelling": "正在取消……",
    "job.read": "阅读分镜",
    "job.again": "重新分析",
    "job.retrying": "第 {attempts} 次尝试失败：{error}。将于 {time} 重试（{countdown}）。",
    "job.retryingSoon": "第 {attempts} 次尝试失败：{error}。即将重试。",
    "job.failed": "任务失败：{code}：{message}",
    "job.cancelled": "任务已取消。",
    "job.completed": "完成：{chapters} 章，{scenes} 个场景，{panels} 格，{characters} 个角色。",
    "job.history": "经过",
    "job.nextAttempt": "下次尝试：{time}",
    "job.reconnecting": "连接中断，正在重连……",
    "job.inSeconds": "{seconds} 秒后",
    "job.now": "马上",
    "status.queued": "排队中",
    "status.running": "运行中",
    "status.retrying": "重试中",
    "status.completed": "已完成",
    "status.failed": "失败",
    "status.cancelled": "已取消",
    "reader.meta": "{chapters} 章 · {scenes} 个场景 · {panels} 格 · {characters} 个角色",
    "reader.madeBy": "由 {analyzer} 分析器生成",
    "reader.export": "下载 JSON",
    "reader.print": "打印 / PDF",
    "reader.chapters": "章节",
    "reader.chapter": "章节",
    "reader.prev": "上一章",
    "reader.next": "下一章",
    "reader.chapterOption": "{index}. {title}",
    "reader.chapterInfo": "第 {index} 章，共 {count} 章 · {scenes} 个场景 · {panels} 格",
    "reader.scene": "场景 {number}",
    "reader.location": "地点",
    "reader.panel": "第 {number} 格",
    "reader.inPanel": "本格人物",
    "reader.prompt": "绘图提示词",
    "reader.hidePrompt": "收起提示词",
    "reader.copy": "复制",
    "reader.copied": "已复制到剪贴板。",
    "reader.copyFailed": "无法自动复制：提示词已选中，请按 Ctrl+C。",
    "reader.narrator": "旁白",
    "reader.unknownSpeaker": "？（说话人不明）",
    "reader.cast": "角色",
    "reader.castHint": "选择一个角色，高亮其出场的格子。",
    "reader.aliases": "又名：{aliases}",
    "reader.appearance": "外貌",
    "reader.castCount": "本章 {count} 格",
    "reader.castOne": "本章 1 格",
    "reader.castAbsent": "本章未出场",
    "reader.highlighted": "{name} 出现在本章 {total} 格中的 {count} 格。",
    "reader.cleared": "未高亮任何角色。",
    "reader.empty": "这份分镜没有场景。",
    "reader.pending": "分镜尚未生成。",
    "reader.followJob": "查看任务",
    "shot.establishing": "全景（交代镜头）",
    "shot.wide": "远景",
    "shot.medium": "中景",
    "shot.close-up": "近景",
    "shot.extreme-close-up": "特写",
    "shot.over-the-shoulder": "过肩镜头",
    "work.heading": "我的作品",
    "work.novels": "小说",
    "work.jobs": "任务",
    "work.more": "加载更多",
    "work.none": "还没有内容。",
    "work.novelMeta": "{chars} 字 · 上传于 {created}",
    "work.latest": "最近任务：",
    "work.jobMeta": "{type} · {percent}% · {created}",
    "work.read": "阅读",
    "work.follow": "查看",
    "work.analyze": "重新分析",
    "work.delete": "删除",
    "work.confirmDelete": "删除《{title}》及其全部任务和分镜？此操作无法撤销。",
    "work.deleted": "已删除《{title}》。",
    "auth.heading": "登录",
    "auth.explain":
      "此服务需要 API 密钥或令牌。它只保存在当前浏览器标签页中，并通过 Authorization 请求头发送，绝不出现在网址里。",
    "auth.refused": "密钥或令牌被拒绝，请换一个。",
    "auth.label": "API 密钥或令牌",
    "auth.submit": "登录",
    "auth.cancel": "取消",
    "error.network": "无法连接服务，请检查网络后重试。",
    "error.generic": "出错了：{message}",
    "error.unauthorized": "需要登录才能继续。",
    notFound: "此地址没有内容。",
    back: "返回首页",
  },
};

const LANG_KEY = "storyboard.lang";
let current = chooseLanguage();

function chooseLanguage() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved in STRINGS) return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

/** The page's language: `en` or `zh`. */
export function lang() {
  return current;
}

/** The BCP 47 tag for the page's `lang` attribute and for dates and numbers. */
export function locale() {
  return current === "zh" ? "zh-Hans" : "en";
}

/** Switch the page's language and remember the choice (not a secret: localStorage). */
export function setLang(next) {
  current = next in STRINGS ? next : "en";
  localStorage.setItem(LANG_KEY, current);
  document.documentElement.lang = locale();
}

/** A string of the page in its language, with `{name}` filled from `vars`. */
export function t(key, vars = {}) {
  const template = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** A date and time in the page's language. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? String(iso)
    : new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "medium" }).format(date);
}

/** A number with the page's grouping. */
export function number(value) {
  return new Intl.NumberFormat(locale()).format(value);
}

/** A byte count for people. */
export function bytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}

document.documentElement.lang = locale();
