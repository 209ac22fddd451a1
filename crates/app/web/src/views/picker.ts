// Before sign-in: find the organisation through the public discovery index (no credential),
// read its discovery document, and go to its identity provider.

import { publicJson } from '../api';
import { begin } from '../auth';
import { alertBox } from '../ctx';
import { fill, focusHeading, h } from '../dom';
import { t } from '../i18n';
import type { Discovery, OrgHit } from '../types';

export async function signInTo(slug: string, out: HTMLElement): Promise<void> {
  try {
    const d = await publicJson<Discovery>(`/discovery/${encodeURIComponent(slug)}`);
    fill(out, h('p', { role: 'status' }, t('signingIn')));
    await begin(d, 'api');
  } catch (e) {
    fill(out, alertBox(e instanceof Error ? e.message : t('error')));
  }
}

export function picker(root: HTMLElement, message?: string): void {
  const results = h('div', { id: 'org-results', 'aria-live': 'polite' });
  const input = h('input', {
    id: 'org-q',
    type: 'search',
    name: 'q',
    autocomplete: 'organization',
    minlength: 2,
    required: true,
    'aria-describedby': 'org-hint',
  });
  const form = h(
    'form',
    {
      class: 'card',
      role: 'search',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const q = input.value.trim();
        if (q.length < 2) {
          fill(results, alertBox(t('findOrgHint')));
          return;
        }
        fill(results, h('p', { role: 'status' }, t('loading')));
        try {
          const hits = await publicJson<OrgHit[]>(`/discovery?q=${encodeURIComponent(q)}`);
          if (hits.length === 0) {
            fill(results, h('p', {}, t('noOrgs')));
            return;
          }
          fill(
            results,
            h(
              'ul',
              { class: 'list' },
              hits.map((o) =>
                h(
                  'li',
                  {},
                  h('button', { type: 'button', class: 'row', onclick: () => void signInTo(o.slug, results) }, h('strong', {}, o.name), h('span', { class: 'muted' }, ` ${o.slug}`)),
                ),
              ),
            ),
          );
        } catch (e) {
          fill(results, alertBox(e instanceof Error ? e.message : t('error')));
        }
      },
    },
    h('label', { for: 'org-q' }, t('orgName')),
    h('p', { id: 'org-hint', class: 'muted' }, t('findOrgHint')),
    h('div', { class: 'inline' }, input, h('button', { type: 'submit' }, t('search'))),
  );
  fill(
    root,
    h('header', { class: 'bar' }, h('span', { class: 'brand' }, t('app'))),
    h('main', { id: 'main' }, h('h1', {}, t('findOrg')), message ? alertBox(message) : null, form, results),
  );
  focusHeading(root);
}
