// The browser as an MLS device (RFC 9420, ciphersuite 1) of Carebridge's duty chat, with
// ts-mls: the same protocol as the Rust client (`crates/client`). The device registers its
// Ed25519 key with the person's token, uploads KeyPackages (20 one-time and a last-resort one),
// then talks to the chat service with its own device token only:
// - the first rostered device online creates a duty's group (external_senders = the server's
//   key), the others join from the Welcome a member's commit produced;
// - the server's external Add/Remove proposals are stored and committed by reference by
//   whichever device is online (commits as public messages, with the ratchet tree in the
//   Welcome); a lost race (409 stale_epoch) is caught up and retried;
// - application messages are private messages; the plaintext is JSON (`text` or `attachment`).
// Keys and group states live in the app's IndexedDB (wiped on sign-out). Every operation runs
// one at a time (`serial`), so a socket frame never interleaves with a send.

import {
  acceptAll,
  createApplicationMessage,
  createCommit,
  createGroup,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeGroupState,
  decodeMlsMessage,
  emptyPskIndex,
  encodeExternalSenders,
  encodeGroupState,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processMessage,
  type Capabilities,
  type CiphersuiteImpl,
  type ClientState,
  type Credential,
  type KeyPackage,
  type MLSMessage,
  type PrivateKeyPackage,
} from 'ts-mls';
import { defaultClientConfig } from 'ts-mls/clientConfig.js';
import { makeKeyPackageRef } from 'ts-mls/keyPackage.js';
import { call } from '../api';
import { net, Offline, type Session } from '../auth';
import * as store from '../store';

export interface ChatGroup {
  duty_id: string;
  phase: string;
  created: boolean;
  epoch: number | null;
  member: boolean;
  external_sender_key: string;
  external_sender_identity: string;
  writable_until: string;
  deleted_at: string;
}

export interface ChatMessage {
  duty_id: string;
  seq: number;
  epoch: number;
  kind: 'application' | 'proposal' | 'commit' | 'welcome';
  sender: string | null;
  data: string;
  at: string;
}

export type Content =
  | { type: 'text'; text: string }
  | { type: 'attachment'; id: string; name: string; mime: string; size: number; key: string; nonce: string };

export interface Line {
  seq: number;
  at: string;
  mine: boolean;
  sender: string | null;
  content: Content;
}

export type ChatEvent =
  | { kind: 'line'; duty: string; line: Line }
  | { kind: 'joined'; duty: string }
  /** The chat is gone for this device: `deleted` (retention, or the person left the roster)
   * or `removed` (this device was taken out of the group). */
  | { kind: 'gone'; duty: string; why: 'deleted' | 'removed' }
  /** This device no longer exists on the server: every chat of it is gone. */
  | { kind: 'device-gone' };

interface StoredKeyPackage {
  ref: string;
  bytes: Uint8Array;
  priv: PrivateKeyPackage;
  lastResort: boolean;
}

interface Device {
  id: string;
  token: string;
  identity: string;
  publicKey: Uint8Array;
  signKey: Uint8Array;
  keyPackages: StoredKeyPackage[];
}

interface Group {
  cursor: number;
  state: ClientState | null;
}

/** The device was removed (or its person deactivated): its chat data is dropped. */
export class DeviceGone extends Error {}
/** The server refused; `code` is the problem's code (`stale_epoch`, `read_only`, …). */
export class ChatRefused extends Error {
  constructor(
    public status: number,
    public code: string,
    detail: string,
  ) {
    super(detail);
  }
}

const SUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519';
const ONE_TIME = 20;
const LINES_KEPT = 2000;
const utf8 = new TextEncoder();

export function b64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function unb64(s: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

function uuidBytes(id: string): Uint8Array {
  const hex = id.replace(/-/g, '');
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16));
}

function decode(bytes: Uint8Array): MLSMessage {
  let d: [MLSMessage, number] | undefined;
  try {
    d = decodeMlsMessage(bytes, 0);
  } catch {
    d = undefined;
  }
  if (!d || d[1] !== bytes.length) throw new Error('not an MLS message');
  return d[0];
}

function capabilities(lastResort: boolean): Capabilities {
  return {
    versions: ['mls10'],
    ciphersuites: [SUITE],
    extensions: lastResort ? [0x000a] : [],
    proposals: [],
    credentials: ['basic'],
  };
}

function parseContent(bytes: Uint8Array): Content {
  const text = new TextDecoder().decode(bytes);
  try {
    const v = JSON.parse(text) as Partial<Content> & Record<string, unknown>;
    if (v.type === 'text' && typeof v.text === 'string') return { type: 'text', text: v.text };
    if (v.type === 'attachment' && typeof v.id === 'string' && typeof v.key === 'string' && typeof v.nonce === 'string') {
      return {
        type: 'attachment',
        id: v.id,
        name: String(v.name ?? 'attachment'),
        mime: String(v.mime ?? 'application/octet-stream'),
        size: Number(v.size ?? 0),
        key: v.key,
        nonce: v.nonce,
      };
    }
  } catch {
    // Not JSON: shown as text, like the Rust client does.
  }
  return { type: 'text', text };
}

export class ChatEngine {
  private groups = new Map<string, Group>();
  private queue: Promise<unknown> = Promise.resolve();
  private ws: WebSocket | null = null;
  private closed = false;
  private listeners = new Set<(e: ChatEvent) => void>();

  private constructor(
    private base: string,
    private cs: CiphersuiteImpl,
    private device: Device,
  ) {}

  /** The device of this browser: registered (and its KeyPackages uploaded) on first use. */
  static async start(session: Session, chatUrl: string | null): Promise<ChatEngine> {
    const base = (chatUrl ?? location.origin).replace(/\/$/, '');
    const cs = await getCiphersuiteImpl(getCiphersuiteFromName(SUITE));
    let device = await store.get<Device>('chat.device');
    if (!device) device = await ChatEngine.register(session, cs);
    const e = new ChatEngine(base, cs, device);
    try {
      await e.topUp();
    } catch (err) {
      // Offline: the stored chats can still be read; the stock is checked next time.
      if (!(err instanceof Offline)) throw err;
    }
    return e;
  }

  private static async register(session: Session, cs: CiphersuiteImpl): Promise<Device> {
    const keys = await cs.signature.keygen();
    const name = `Browser · ${navigator.platform || 'web'}`.slice(0, 100);
    const r = await call<{ device: { id: string; identity: string }; token: string }>(session, 'api', '/api/v1/chat/devices', {
      method: 'POST',
      body: { name, signature_key: b64(keys.publicKey) },
    });
    const device: Device = {
      id: r.device.id,
      token: r.token,
      identity: r.device.identity,
      publicKey: keys.publicKey,
      signKey: keys.signKey,
      keyPackages: [],
    };
    await store.set('chat.device', device);
    return device;
  }

  get deviceId(): string {
    return this.device.id;
  }

  on(f: (e: ChatEvent) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  private emit(e: ChatEvent): void {
    for (const f of this.listeners) f(e);
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const p = this.queue.then(f, f);
    this.queue = p.catch(() => undefined);
    return p;
  }

  // ---- HTTP with the device token ----------------------------------------------------------

  private async req<T>(path: string, init: { method?: string; body?: unknown; raw?: Uint8Array } = {}): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.device.token}`, accept: 'application/json' };
    let body: BodyInit | null = null;
    if (init.raw) {
      headers['content-type'] = 'application/octet-stream';
      body = init.raw as unknown as BodyInit;
    } else if (init.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.body);
    }
    const r = await net(this.base + path, { method: init.method ?? 'GET', headers, body, credentials: 'omit' });
    if (r.status === 401) {
      await this.forgetDevice();
      throw new DeviceGone('this device was removed');
    }
    if (r.status === 204) return undefined as T;
    const text = await r.text();
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (!r.ok) throw new ChatRefused(r.status, String(json['code'] ?? ''), String(json['detail'] ?? json['title'] ?? r.statusText));
    return json as T;
  }

  private async forgetDevice(): Promise<void> {
    this.closed = true;
    this.ws?.close();
    this.emit({ kind: 'device-gone' });
    const keys = ['chat.device', ...[...this.groups.keys()].flatMap((d) => [`chat.group.${d}`, `chat.lines.${d}`])];
    for (const k of keys) await store.del(k);
    this.groups.clear();
  }

  // ---- KeyPackages ---------------------------------------------------------------------------

  private async keyPackage(lastResort: boolean): Promise<StoredKeyPackage> {
    const now = BigInt(Math.floor(Date.now() / 1000));
    const cred: Credential = { credentialType: 'basic', identity: utf8.encode(this.device.identity) };
    const exts = lastResort ? [{ extensionType: 0x000a, extensionData: new Uint8Array() }] : [];
    const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
      cred,
      capabilities(lastResort),
      // As openmls does: an hour back for clocks that lag, twelve weeks ahead.
      { notBefore: now - 3600n, notAfter: now + 12n * 7n * 86400n },
      exts,
      { signKey: this.device.signKey, publicKey: this.device.publicKey },
      this.cs,
    );
    const ref = b64(await makeKeyPackageRef(publicPackage, this.cs.hash));
    const bytes = encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage: publicPackage });
    return { ref, bytes, priv: privatePackage, lastResort };
  }

  /** Keeps at least a few one-time KeyPackages (and the last-resort one) on the server. */
  private async topUp(): Promise<void> {
    const stock = await this.req<{ available: number; last_resort: boolean }>('/api/v1/chat/key-packages', { method: 'POST', body: {} });
    const fresh: StoredKeyPackage[] = [];
    const want = stock.available < 5 ? ONE_TIME : 0;
    for (let i = 0; i < want; i++) fresh.push(await this.keyPackage(false));
    const last = stock.last_resort ? null : await this.keyPackage(true);
    if (fresh.length === 0 && !last) return;
    // Keep the private halves first: a Welcome may name a package the moment it is uploaded.
    this.device.keyPackages.push(...fresh, ...(last ? [last] : []));
    await store.set('chat.device', this.device);
    await this.req('/api/v1/chat/key-packages', {
      method: 'POST',
      body: { key_packages: fresh.map((k) => b64(k.bytes)), ...(last ? { last_resort: b64(last.bytes) } : {}) },
    });
  }

  // ---- group state ---------------------------------------------------------------------------

  private async group(duty: string): Promise<Group> {
    let g = this.groups.get(duty);
    if (!g) {
      const saved = await store.get<{ cursor: number; state: Uint8Array | null }>(`chat.group.${duty}`);
      let state: ClientState | null = null;
      if (saved?.state) {
        const d = decodeGroupState(saved.state, 0);
        if (d) state = { ...d[0], clientConfig: defaultClientConfig };
      }
      g = { cursor: saved?.cursor ?? 0, state };
      this.groups.set(duty, g);
    }
    return g;
  }

  private async save(duty: string, g: Group): Promise<void> {
    await store.set(`chat.group.${duty}`, { cursor: g.cursor, state: g.state ? encodeGroupState(g.state) : null });
  }

  async lines(duty: string): Promise<Line[]> {
    return (await store.get<Line[]>(`chat.lines.${duty}`)) ?? [];
  }

  private async addLine(duty: string, line: Line): Promise<void> {
    const all = await this.lines(duty);
    if (all.some((l) => l.seq === line.seq)) return;
    all.push(line);
    all.sort((a, b) => a.seq - b.seq);
    await store.set(`chat.lines.${duty}`, all.slice(-LINES_KEPT));
    this.emit({ kind: 'line', duty, line });
  }

  private async forget(duty: string, why: 'deleted' | 'removed'): Promise<void> {
    this.groups.delete(duty);
    await store.del(`chat.group.${duty}`);
    this.emit({ kind: 'gone', duty, why });
  }

  /** The duty's chat as the server sees it (404: not for this person, or deleted). */
  head(duty: string): Promise<ChatGroup> {
    return this.req<ChatGroup>(`/api/v1/chat/groups/${encodeURIComponent(duty)}`);
  }

  /** Who is in the chat: device id → the person's name (the stream names devices). */
  async names(duty: string): Promise<Map<string, string>> {
    const list = await this.req<{ device_id: string; name: string }[]>(`/api/v1/chat/groups/${encodeURIComponent(duty)}/members`);
    return new Map(list.map((m) => [m.device_id, m.name]));
  }

  /** Whether this device is in the duty's group on this device (it can read and write). */
  async joined(duty: string): Promise<boolean> {
    const g = await this.group(duty);
    return g.state !== null && g.state.groupActiveState.kind === 'active';
  }

  /** Creates the group when nobody has yet, catches up and commits pending proposals. */
  open(duty: string): Promise<ChatGroup> {
    return this.serial(async () => {
      let head: ChatGroup;
      try {
        head = await this.head(duty);
      } catch (e) {
        if (e instanceof ChatRefused && e.status === 404) await this.forget(duty, 'deleted');
        throw e;
      }
      const g = await this.group(duty);
      if (!head.created && head.phase === 'writable' && !g.state) {
        await this.create(duty, head, g);
      }
      await this.syncLocked(duty);
      return head;
    });
  }

  private async create(duty: string, head: ChatGroup, g: Group): Promise<void> {
    const own = await this.keyPackage(false);
    const kp = (decode(own.bytes) as MLSMessage & { keyPackage: KeyPackage }).keyPackage;
    const ext = {
      extensionType: 'external_senders' as const,
      extensionData: encodeExternalSenders([
        {
          signaturePublicKey: unb64(head.external_sender_key),
          credential: { credentialType: 'basic', identity: utf8.encode(head.external_sender_identity) },
        },
      ]),
    };
    const state = await createGroup(uuidBytes(duty), kp, own.priv, [ext], this.cs);
    const info = await createGroupInfoWithExternalPubAndRatchetTree(state, [], this.cs);
    try {
      await this.req(`/api/v1/chat/groups/${encodeURIComponent(duty)}`, {
        method: 'POST',
        body: { group_info: b64(encodeMlsMessage({ version: 'mls10', wireformat: 'mls_group_info', groupInfo: info })) },
      });
    } catch (e) {
      // Another device was first: wait for its Welcome.
      if (e instanceof ChatRefused && e.status === 409) return;
      throw e;
    }
    g.state = state;
    g.cursor = 0;
    await this.save(duty, g);
    this.emit({ kind: 'joined', duty });
  }

  /** Fetches what this device missed, processes it, commits pending proposals; repeats until
   * nothing is pending (at most 20 rounds). */
  private async syncLocked(duty: string): Promise<void> {
    for (let round = 0; round < 20; round++) {
      await this.catchUp(duty);
      if (!(await this.commitPending(duty))) return;
    }
  }

  sync(duty: string): Promise<void> {
    return this.serial(() => this.syncLocked(duty));
  }

  private async catchUp(duty: string): Promise<void> {
    const g = await this.group(duty);
    for (;;) {
      let page: { items: ChatMessage[]; more: boolean };
      try {
        page = await this.req(`/api/v1/chat/groups/${encodeURIComponent(duty)}/messages?after=${g.cursor}&limit=500`);
      } catch (e) {
        if (e instanceof ChatRefused && e.status === 404) await this.forget(duty, 'deleted');
        throw e;
      }
      for (const m of page.items) await this.process(duty, g, m);
      if (!page.more) return;
    }
  }

  private async process(duty: string, g: Group, m: ChatMessage): Promise<void> {
    if (m.seq <= g.cursor) return;
    const me = m.sender === this.device.id;
    if (m.kind === 'welcome') {
      g.cursor = m.seq;
      if (g.state && g.state.groupActiveState.kind === 'active' && Number(g.state.groupContext.epoch) >= m.epoch) return;
      await this.join(duty, g, unb64(m.data));
      return;
    }
    if (!g.state) return;
    g.cursor = m.seq;
    const epoch = Number(g.state.groupContext.epoch);
    if (me || ((m.kind === 'proposal' || m.kind === 'commit') && m.epoch < epoch)) {
      await this.save(duty, g);
      return;
    }
    const msg = decode(unb64(m.data));
    if (msg.wireformat !== 'mls_public_message' && msg.wireformat !== 'mls_private_message') {
      await this.save(duty, g);
      return;
    }
    try {
      const r = await processMessage(msg, g.state, emptyPskIndex, acceptAll, this.cs);
      g.state = r.newState;
      if (r.kind === 'applicationMessage') {
        await this.save(duty, g);
        await this.addLine(duty, { seq: m.seq, at: m.at, mine: false, sender: m.sender, content: parseContent(r.message) });
        return;
      }
    } catch (e) {
      // A message this device cannot use (e.g. from before it joined) is skipped, as openmls
      // devices do; the stream goes on.
      console.warn('chat: skipped message', m.seq, e);
    }
    await this.save(duty, g);
    if (g.state.groupActiveState.kind !== 'active') await this.forget(duty, 'removed');
  }

  private async join(duty: string, g: Group, bytes: Uint8Array): Promise<void> {
    const msg = decode(bytes);
    if (msg.wireformat !== 'mls_welcome') throw new Error('expected a Welcome');
    const refs = new Set(msg.welcome.secrets.map((s) => b64(s.newMember)));
    const kp = this.device.keyPackages.find((k) => refs.has(k.ref));
    if (!kp) {
      console.warn('chat: a Welcome for none of this device’s KeyPackages');
      return;
    }
    const pub = (decode(kp.bytes) as MLSMessage & { keyPackage: KeyPackage }).keyPackage;
    const state = await joinGroup(msg.welcome, pub, kp.priv, emptyPskIndex, this.cs);
    if (b64(state.groupContext.groupId) !== b64(uuidBytes(duty))) throw new Error('a Welcome for another group');
    g.state = state;
    await this.save(duty, g);
    if (!kp.lastResort) {
      this.device.keyPackages = this.device.keyPackages.filter((k) => k !== kp);
      await store.set('chat.device', this.device);
    }
    this.emit({ kind: 'joined', duty });
  }

  /** Commits the server's pending proposals; true when a round must follow (committed, or
   * lost the race). */
  private async commitPending(duty: string): Promise<boolean> {
    const g = await this.group(duty);
    if (!g.state || Object.keys(g.state.unappliedProposals).length === 0) return false;
    let r;
    try {
      r = await createCommit({ state: g.state, cipherSuite: this.cs }, { wireAsPublicMessage: true, ratchetTreeExtension: true });
    } catch (e) {
      // E.g. the server proposes removing this very device: another member commits that.
      console.warn('chat: cannot commit the pending proposals', e);
      return false;
    }
    const body: Record<string, string> = { message: b64(encodeMlsMessage(r.commit)) };
    if (r.welcome) body['welcome'] = b64(encodeMlsMessage({ version: 'mls10', wireformat: 'mls_welcome', welcome: r.welcome }));
    try {
      await this.req(`/api/v1/chat/groups/${encodeURIComponent(duty)}/messages`, { method: 'POST', body });
    } catch (e) {
      if (e instanceof ChatRefused && e.code === 'stale_epoch') return true;
      throw e;
    }
    g.state = r.newState;
    await this.save(duty, g);
    if (g.state.groupActiveState.kind !== 'active') await this.forget(duty, 'removed');
    return true;
  }

  /** Sends a text or an attachment message; returns its line. */
  send(duty: string, content: Content): Promise<Line> {
    return this.serial(async () => {
      const plain = utf8.encode(JSON.stringify(content));
      for (let attempt = 0; attempt < 20; attempt++) {
        const g = await this.group(duty);
        if (!g.state || Object.keys(g.state.unappliedProposals).length > 0) await this.syncLocked(duty);
        if (!g.state) throw new ChatRefused(403, 'not_member', 'this device is not in the chat yet');
        const r = await createApplicationMessage(g.state, plain, this.cs);
        // The ratchet moved even if the server refuses: never reuse the old state's key.
        g.state = r.newState;
        await this.save(duty, g);
        try {
          const posted = await this.req<{ seq: number }>(`/api/v1/chat/groups/${encodeURIComponent(duty)}/messages`, {
            method: 'POST',
            body: { message: b64(encodeMlsMessage({ version: 'mls10', wireformat: 'mls_private_message', privateMessage: r.privateMessage })) },
          });
          const line: Line = { seq: posted.seq, at: new Date().toISOString(), mine: true, sender: this.device.id, content };
          await this.addLine(duty, line);
          return line;
        } catch (e) {
          if (e instanceof ChatRefused && e.code === 'stale_epoch') {
            await this.syncLocked(duty);
            continue;
          }
          throw e;
        }
      }
      throw new ChatRefused(409, 'stale_epoch', 'the chat kept changing; try again');
    });
  }

  /** Encrypts a file (AES-256-GCM, fresh key), uploads it, and sends the message naming it. */
  async sendFile(duty: string, file: File): Promise<Line> {
    const data = new Uint8Array(await file.arrayBuffer());
    const key = crypto.getRandomValues(new Uint8Array(32));
    const nonce = crypto.getRandomValues(new Uint8Array(12));
    const k = await crypto.subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt']);
    const blob = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, tagLength: 128 }, k, data));
    const a = await this.req<{ id: string }>(`/api/v1/chat/groups/${encodeURIComponent(duty)}/attachments`, { method: 'POST', raw: blob });
    return this.send(duty, {
      type: 'attachment',
      id: a.id,
      name: file.name.slice(0, 200) || 'attachment',
      mime: file.type || 'application/octet-stream',
      size: data.length,
      key: b64(key),
      nonce: b64(nonce),
    });
  }

  /** Downloads and decrypts an attachment; checks its size. */
  async fetchFile(duty: string, c: Extract<Content, { type: 'attachment' }>): Promise<Blob> {
    const r = await net(`${this.base}/api/v1/chat/groups/${encodeURIComponent(duty)}/attachments/${encodeURIComponent(c.id)}`, {
      headers: { authorization: `Bearer ${this.device.token}` },
      credentials: 'omit',
    });
    if (!r.ok) throw new ChatRefused(r.status, '', `the attachment could not be fetched (${r.status})`);
    const k = await crypto.subtle.importKey('raw', unb64(c.key), 'AES-GCM', false, ['decrypt']);
    const plain = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: unb64(c.nonce), tagLength: 128 }, k, await r.arrayBuffer()));
    if (plain.length !== c.size) throw new Error('the attachment does not match its message');
    return new Blob([plain], { type: c.mime });
  }

  // ---- live stream ---------------------------------------------------------------------------

  /** Opens the WebSocket (the device token as a subprotocol) and catches up every chat. */
  connect(): void {
    if (this.closed || this.ws) return;
    const url = `${this.base.replace(/^http/, 'ws')}/api/v1/chat/ws`;
    const ws = new WebSocket(url, ['carebridge.chat.v1', this.device.token]);
    this.ws = ws;
    ws.onopen = () => void this.catchUpAll();
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      const f = JSON.parse(ev.data) as { type: string; message?: ChatMessage; duty_id?: string };
      if (f.type === 'message' && f.message) {
        const m = f.message;
        void this.serial(() => this.onFrame(m)).catch((e: unknown) => console.warn('chat frame', e));
      } else if (f.type === 'deleted' && f.duty_id) {
        const d = f.duty_id;
        void this.serial(() => this.forget(d, 'deleted'));
      }
    };
    ws.onclose = () => {
      this.ws = null;
      // The server closes the socket of a removed device: ask before reconnecting (a 401
      // ends this device here).
      if (!this.closed) {
        setTimeout(() => {
          this.req('/api/v1/chat/groups')
            .then(() => this.connect())
            .catch((e: unknown) => {
              if (!(e instanceof DeviceGone)) setTimeout(() => this.connect(), 5000);
            });
        }, 1000);
      }
    };
  }

  /** A frame in order is processed as it is; a gap is fetched by cursor; proposals are
   * committed at once. */
  private async onFrame(m: ChatMessage): Promise<void> {
    const g = await this.group(m.duty_id);
    const inOrder = g.state ? m.seq <= g.cursor + 1 : m.kind === 'welcome';
    if (!inOrder) return this.syncLocked(m.duty_id);
    await this.process(m.duty_id, g, m);
    if (g.state && Object.keys(g.state.unappliedProposals).length > 0) await this.syncLocked(m.duty_id);
  }

  /** Every chat of the person: create where nobody has, catch up and commit. */
  private async catchUpAll(): Promise<void> {
    const list = await this.req<ChatGroup[]>('/api/v1/chat/groups');
    for (const head of list) {
      await this.serial(async () => {
        const g = await this.group(head.duty_id);
        if (!head.created && head.phase === 'writable' && !g.state) await this.create(head.duty_id, head, g);
        await this.syncLocked(head.duty_id);
      }).catch((e: unknown) => console.warn('chat catch-up', head.duty_id, e));
    }
  }

  /** Removes this device from the server (and so from every chat) — on sign-out. */
  async remove(): Promise<void> {
    this.closed = true;
    this.ws?.close();
    try {
      await this.req(`/api/v1/chat/devices/${encodeURIComponent(this.device.id)}`, { method: 'DELETE' });
    } catch {
      // Already gone, or offline: the local keys go anyway.
    }
  }
}
