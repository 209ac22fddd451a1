// What every view gets: the session, the page's main region, and the app's shared state.

import { ApiError } from './api';
import { Offline, SessionEnded, type Session } from './auth';
import { h } from './dom';
import { t } from './i18n';
import type { PortalClient } from './types';

export interface Ctx {
  session: Session;
  main: HTMLElement;
  /** Clients the person may act for in the portal (`null`: no portal grant). */
  clients: PortalClient[] | null;
  /** Whether the organisation offers its members the contact directory (feature `directory`). */
  directory: boolean;
  /** The person's own directory entry kind, once the contacts are on the device. */
  kind: string | null;
  offline: boolean;
  /** Shows or hides the offline notice. */
  markOffline(offline: boolean): void;
  /** Sends the person back to sign in (their grant ended). */
  ended(): void;
}

/** A sentence for the person about what went wrong. */
export function explain(ctx: Ctx, e: unknown): string {
  if (e instanceof Offline) {
    ctx.markOffline(true);
    return t('offline');
  }
  if (e instanceof SessionEnded) {
    ctx.ended();
    return t('sessionEnded');
  }
  if (e instanceof ApiError) {
    const p = e.problem;
    const first = p.errors?.[0];
    return [p.detail ?? p.title, first?.detail].filter(Boolean).join(': ');
  }
  console.error(e);
  return t('error');
}

export function alertBox(text: string): HTMLElement {
  return h('p', { class: 'alert', role: 'alert' }, text);
}

export function notice(text: string): HTMLElement {
  return h('p', { class: 'notice', role: 'status' }, text);
}
