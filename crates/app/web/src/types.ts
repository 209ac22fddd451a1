// The shapes of the API answers the app reads (see /api/v1/openapi.json and the portal's
// OpenAPI document).

export interface Contact { value: string; type: string }
export interface Address { street: string | null; postal_code: string | null; locality: string | null; country: string | null }
export interface UnitRef { id: string; name: string }
export interface Person {
  id: string;
  kind: string;
  given_name: string;
  family_name: string;
  emails: Contact[];
  phones: Contact[];
  address: Address;
  units: UnitRef[];
  groups: string[];
  skills: string[];
  active: boolean;
  fields?: string[];
}
export interface ContactChanges { reset: boolean; upserts: Person[]; removals: string[]; more: boolean; next_cursor: string }

export interface Position { id: string; name: string; needed?: number }
export interface Duty {
  id: string;
  title: string;
  location: string | null;
  description: string | null;
  starts_at: string;
  ends_at: string;
  time_zone: string;
  state: string;
  chat: boolean;
  positions: Position[];
  confirmed: number;
  requested: number;
}
export interface Assignment { id: string; duty_id: string; role: string; status: string; position_id: string | null; note: string | null }
export interface MyDuty { duty: Duty; assignment: Assignment }
export interface Page<T> { items: T[]; next_cursor: string | null }

export interface OrgHit { slug: string; name: string }
export interface Discovery {
  org_id: string;
  slug: string;
  name: string;
  issuer: string;
  client_id: string;
  portal_url: string | null;
  chat_url: string | null;
  features: string[];
  languages: string[];
  branding?: { primary_color?: string | null; logo_url?: string | null } | null;
  support?: { email?: string | null; phone?: string | null; url?: string | null } | null;
}

export interface PortalClient { id: string; given_name: string; family_name: string; relation: string; permissions: { appointments: boolean; messages: boolean } }
export interface Appointment {
  id: string;
  client_id: string;
  date: string;
  from: string;
  to: string;
  starts_at: string;
  ends_at: string;
  time_zone: string;
  service: string;
  status: string;
  carer: { first_name: string; photo_url: string | null } | null;
  request: { id: string; kind: string; state: string } | null;
}
export interface Message { id: string; direction: string; author: string; subject: string; body: string; created_at: string }
export interface Problem { status: number; title: string; detail?: string; errors?: { pointer?: string; detail?: string; message?: string }[] }
