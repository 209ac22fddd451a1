// The app's own storage in the browser (IndexedDB): the session (refresh tokens), the offline
// copy of the contacts the person may see, and the last duty list. Never the phone's contacts.
// `wipe` deletes the whole database (sign-out, device removal).

import type { Person } from './types';

const NAME = 'carebridge';
let opened: Promise<IDBDatabase> | null = null;

function open(): Promise<IDBDatabase> {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const r = indexedDB.open(NAME, 1);
      r.onupgradeneeded = () => {
        const db = r.result;
        db.createObjectStore('kv');
        db.createObjectStore('contacts', { keyPath: 'id' });
      };
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }
  return opened;
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
  });
}

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

export async function get<T>(key: string): Promise<T | undefined> {
  const db = await open();
  return (await request(db.transaction('kv').objectStore('kv').get(key))) as T | undefined;
}

export async function set(key: string, value: unknown): Promise<void> {
  const db = await open();
  const tx = db.transaction('kv', 'readwrite');
  tx.objectStore('kv').put(value, key);
  await done(tx);
}

export async function del(key: string): Promise<void> {
  const db = await open();
  const tx = db.transaction('kv', 'readwrite');
  tx.objectStore('kv').delete(key);
  await done(tx);
}

/** Applies one answer of the sync feed, and its cursor, in one transaction. */
export async function applyContacts(
  reset: boolean,
  upserts: Person[],
  removals: string[],
  cursor: string,
): Promise<void> {
  const db = await open();
  const tx = db.transaction(['contacts', 'kv'], 'readwrite');
  const s = tx.objectStore('contacts');
  if (reset) s.clear();
  for (const id of removals) s.delete(id);
  for (const p of upserts) s.put(p);
  tx.objectStore('kv').put(cursor, 'contacts.cursor');
  tx.objectStore('kv').put(Date.now(), 'contacts.synced');
  await done(tx);
}

export async function contacts(): Promise<Person[]> {
  const db = await open();
  return request(db.transaction('contacts').objectStore('contacts').getAll() as IDBRequest<Person[]>);
}

/** Deletes everything the app stored in this browser. */
export async function wipe(): Promise<void> {
  if (opened) {
    (await opened).close();
    opened = null;
  }
  await new Promise<void>((resolve, reject) => {
    const r = indexedDB.deleteDatabase(NAME);
    r.onsuccess = () => resolve();
    r.onerror = () => reject(r.error);
    r.onblocked = () => resolve();
  });
  sessionStorage.clear();
}
