// A duty's end-to-end encrypted chat in the browser (loaded on demand: the MLS library stays
// out of the app shell). Shows the retention state (open until, read-only until, deleted), the
// messages, and sends text and encrypted attachments (images shown inline, other files saved).

import { ChatEngine, ChatRefused, DeviceGone, type ChatGroup, type Content, type Line } from '../chat/engine';
import { Offline } from '../auth';
import { alertBox, explain, notice, type Ctx } from '../ctx';
import { fill, focusHeading, h } from '../dom';
import { t, when } from '../i18n';
import * as store from '../store';
import type { Discovery, MyDuty } from '../types';

let engine: Promise<ChatEngine> | null = null;

/** This browser's chat device, started once per page (registered on first use). */
export function device(ctx: Ctx): Promise<ChatEngine> {
  if (!engine) {
    engine = (async () => {
      const d = await store.get<Discovery>('discovery');
      const e = await ChatEngine.start(ctx.session, d?.chat_url ?? null);
      e.connect();
      return e;
    })();
    engine.catch(() => {
      engine = null;
    });
  }
  return engine;
}

/** Removes this browser's chat device from the server (sign-out). */
export async function removeDevice(ctx: Ctx): Promise<void> {
  if (!(await store.get('chat.device'))) return;
  try {
    await (await device(ctx)).remove();
  } catch {
    // Offline or already removed: the keys are wiped with the rest.
  }
}

function lineView(e: ChatEngine, duty: string, l: Line, names: Map<string, string>, out: HTMLElement): HTMLElement {
  const who = l.mine ? t('chatYou') : (names.get(l.sender ?? '') ?? t('chatMember', { id: (l.sender ?? '').slice(0, 8) }));
  const c: Content = l.content;
  let body: HTMLElement;
  if (c.type === 'text') {
    body = h('p', { class: 'body' }, c.text);
  } else {
    const box = h('div', { class: 'attachment' });
    const kb = Math.max(1, Math.round(c.size / 1024));
    box.append(
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: async () => {
            try {
              const blob = await e.fetchFile(duty, c);
              const url = URL.createObjectURL(blob);
              if (c.mime.startsWith('image/')) {
                fill(box, h('img', { src: url, alt: c.name, class: 'shot' }));
              } else {
                fill(box, h('a', { href: url, download: c.name }, `${c.name} (${kb} KB)`));
              }
            } catch (err) {
              fill(out, alertBox(err instanceof Error ? err.message : t('error')));
            }
          },
        },
        t('chatOpenFile', { name: c.name, size: kb }),
      ),
    );
    body = box;
  }
  return h(
    'li',
    { class: l.mine ? 'mine' : 'theirs', 'data-seq': l.seq, 'data-sender': l.sender ?? '' },
    h('p', { class: 'muted' }, h('span', { class: 'who' }, who), ` · ${when(l.at)}`),
    body,
  );
}

export async function chat(ctx: Ctx, duty: string): Promise<void> {
  const mine = ((await store.get<MyDuty[]>('duties.mine')) ?? []).find((m) => m.duty.id === duty);
  const title = mine?.duty.title ?? t('chat');
  const status = h('p', { id: 'chat-state', role: 'status' }, t('loading'));
  const out = h('div', { 'aria-live': 'polite' });
  const list = h('ol', { class: 'list chat', id: 'chat-lines', 'aria-live': 'polite' });
  const text = h('textarea', { id: 'chat-text', rows: 2, maxlength: 8000, disabled: true });
  const file = h('input', { id: 'chat-file', type: 'file', accept: 'image/*,application/pdf', disabled: true });
  const sendBtn = h('button', { type: 'submit', disabled: true }, t('send'));
  const form = h(
    'form',
    { class: 'card', id: 'chat-form' },
    h('label', { for: 'chat-text' }, t('message')),
    text,
    h('label', { for: 'chat-file' }, t('chatFile')),
    file,
    h('div', { class: 'inline' }, sendBtn),
    out,
  );
  fill(ctx.main, h('a', { href: `#/duty/${duty}`, class: 'back' }, t('back')), h('h1', {}, title), status, list, form);
  focusHeading(ctx.main);

  let e: ChatEngine;
  let head: ChatGroup;
  try {
    e = await device(ctx);
    head = await e.open(duty);
  } catch (err) {
    if (err instanceof ChatRefused && err.status === 404) fill(status, t('chatDeleted'));
    else if (err instanceof Offline) {
      // Offline: what this device already read stays readable.
      fill(status, explain(ctx, err));
      const kept = (await store.get<Line[]>(`chat.lines.${duty}`)) ?? [];
      list.replaceChildren(...kept.map((l) => h('li', { class: l.mine ? 'mine' : 'theirs' }, h('p', { class: 'body' }, l.content.type === 'text' ? l.content.text : l.content.name))));
    } else fill(status, alertBox(err instanceof DeviceGone ? t('chatDeviceGone') : explain(ctx, err)));
    return;
  }
  const here = (): boolean => document.body.contains(list);
  // Who wrote: the names of the rostered people's devices, asked again for a device not yet
  // known (someone added meanwhile); people who left show as "Member <device>".
  let names = await e.names(duty).catch(() => new Map<string, string>());
  const asked = new Set<string>();
  const show = (l: Line): void => {
    if (list.querySelector(`[data-seq="${l.seq}"]`)) return;
    const sender = l.sender ?? '';
    if (!l.mine && sender && !names.has(sender) && !asked.has(sender)) {
      asked.add(sender);
      void e
        .names(duty)
        .then((n) => {
          names = n;
          const name = n.get(sender);
          if (name) for (const w of list.querySelectorAll(`[data-sender="${sender}"] .who`)) w.textContent = name;
        })
        .catch(() => undefined);
    }
    const li = lineView(e, duty, l, names, out);
    const after = [...list.children].find((x) => Number((x as HTMLElement).dataset['seq']) > l.seq);
    list.insertBefore(li, after ?? null);
  };
  const state = async (): Promise<void> => {
    const joined = await e.joined(duty);
    const writable = head.phase === 'writable' && joined;
    text.disabled = file.disabled = sendBtn.disabled = !writable;
    const dates =
      head.phase === 'writable'
        ? t('chatOpenUntil', { time: when(head.writable_until) })
        : t('chatReadOnly', { time: when(head.deleted_at) });
    fill(status, joined ? dates : `${dates} ${t('chatWaiting')}`);
  };
  for (const l of await e.lines(duty)) show(l);
  await state();
  const off = e.on((ev) => {
    if (!here()) {
      off();
      return;
    }
    if (ev.kind === 'device-gone') {
      text.disabled = file.disabled = sendBtn.disabled = true;
      fill(status, t('chatDeviceGone'));
      return;
    }
    if (ev.duty !== duty) return;
    if (ev.kind === 'line') show(ev.line);
    else if (ev.kind === 'joined') void state();
    else if (ev.kind === 'gone') {
      text.disabled = file.disabled = sendBtn.disabled = true;
      fill(status, ev.why === 'deleted' ? t('chatDeleted') : t('chatGone'));
    }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const words = text.value.trim();
    const f = file.files?.[0];
    if (!words && !f) {
      fill(out, alertBox(t('required')));
      return;
    }
    sendBtn.disabled = true;
    try {
      if (f) {
        await e.sendFile(duty, f);
        file.value = '';
      }
      if (words) {
        await e.send(duty, { type: 'text', text: words });
        text.value = '';
      }
      fill(out);
    } catch (err) {
      if (err instanceof ChatRefused && err.code === 'read_only') {
        head = { ...head, phase: 'read_only' };
        fill(out, notice(t('chatReadOnlyNow')));
      } else {
        fill(out, alertBox(err instanceof Error && !(err instanceof DeviceGone) ? err.message : t('chatDeviceGone')));
      }
    } finally {
      await state();
    }
  });
}
