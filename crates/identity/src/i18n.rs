//! The words of the sign-in pages in German, English and French. The language comes from
//! `ui_locales` (OpenID Connect) first, then `Accept-Language`, then English.

/// A page language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
    Fr,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Fr => "fr",
        }
    }

    fn of(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "de" | "gsw" => Some(Lang::De),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// The first supported language of `ui_locales` (space-separated), else the best of
    /// `Accept-Language` by q-value, else English.
    pub fn pick(ui_locales: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(l) = ui_locales.and_then(|u| u.split_whitespace().find_map(Lang::of)) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or("").split(',') {
            let mut it = part.split(';');
            let Some(l) = it.next().and_then(Lang::of) else {
                continue;
            };
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, l));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::De => &DE,
            Lang::Fr => &FR,
        }
    }
}

/// Every sentence of the pages.
pub struct Texts {
    pub sign_in: &'static str,
    pub sign_in_with: &'static str,
    pub login: &'static str,
    pub password: &'static str,
    pub forgot: &'static str,
    pub wrong_credentials: &'static str,
    pub locked: &'static str,
    pub too_many: &'static str,
    pub second_factor: &'static str,
    pub totp_code: &'static str,
    pub totp_hint: &'static str,
    pub sms_code: &'static str,
    pub sms_sent_to: &'static str,
    pub resend: &'static str,
    pub resend_wait: &'static str,
    pub verify: &'static str,
    pub wrong_code: &'static str,
    pub code_expired: &'static str,
    pub enrol_title: &'static str,
    pub enrol_intro: &'static str,
    pub enrol_secret: &'static str,
    pub recovery_title: &'static str,
    pub recovery_intro: &'static str,
    pub continue_: &'static str,
    pub consent_title: &'static str,
    pub consent_intro: &'static str,
    pub allow: &'static str,
    pub deny: &'static str,
    pub choose_org: &'static str,
    pub no_membership: &'static str,
    pub forgot_title: &'static str,
    pub forgot_intro: &'static str,
    pub forgot_sent: &'static str,
    pub send_link: &'static str,
    pub new_password: &'static str,
    pub repeat_password: &'static str,
    pub passwords_differ: &'static str,
    pub password_short: &'static str,
    pub password_set: &'static str,
    pub set_password: &'static str,
    pub link_invalid: &'static str,
    pub invite_title: &'static str,
    pub error_title: &'static str,
    pub csrf: &'static str,
    pub signed_out: &'static str,
    pub device_title: &'static str,
    pub device_intro: &'static str,
    pub device_code: &'static str,
    pub device_unknown: &'static str,
    pub device_done: &'static str,
    pub device_denied: &'static str,
    pub scope_openid: &'static str,
    pub scope_profile: &'static str,
    pub scope_email: &'static str,
    pub scope_phone: &'static str,
    pub scope_offline: &'static str,
    pub scope_directory: &'static str,
    pub scope_duties: &'static str,
    pub scope_chat: &'static str,
    pub scope_portal: &'static str,
    pub reset_subject: &'static str,
    pub reset_body: &'static str,
    pub invite_subject: &'static str,
    pub invite_body: &'static str,
    pub sms_body: &'static str,
}

impl Texts {
    /// What a scope lets an app do, for the consent page.
    pub fn scope(&self, s: &str) -> &'static str {
        match s {
            "openid" => self.scope_openid,
            "profile" => self.scope_profile,
            "email" => self.scope_email,
            "phone" => self.scope_phone,
            "offline_access" => self.scope_offline,
            "directory:read" => self.scope_directory,
            "duties:read" => self.scope_duties,
            "chat" => self.scope_chat,
            "portal" => self.scope_portal,
            _ => "",
        }
    }
}

pub static EN: Texts = Texts {
    sign_in: "Sign in",
    sign_in_with: "Sign in with",
    login: "E-mail or mobile number",
    password: "Password",
    forgot: "Forgot your password?",
    wrong_credentials: "The e-mail/number or the password is wrong.",
    locked: "Too many failed attempts. This account is locked for a while; try again later.",
    too_many: "Too many attempts from your network. Wait a minute and try again.",
    second_factor: "Confirm it is you",
    totp_code: "Code from your authenticator app (or a recovery code)",
    totp_hint: "Open your authenticator app and enter the 6-digit code for Carebridge.",
    sms_code: "Code from the text message",
    sms_sent_to: "We sent a 6-digit code to",
    resend: "Send a new code",
    resend_wait: "Please wait before asking for a new code.",
    verify: "Confirm",
    wrong_code: "This code is not right.",
    code_expired: "This code has expired or was tried too often. Ask for a new one.",
    enrol_title: "Set up an authenticator app",
    enrol_intro: "Your organisation asks for a second factor. Scan this code with an authenticator app, then enter the 6-digit code it shows.",
    enrol_secret: "Or enter this key by hand:",
    recovery_title: "Your recovery codes",
    recovery_intro: "Keep these codes somewhere safe. Each one signs you in once if you lose your phone. They are shown only now.",
    continue_: "Continue",
    consent_title: "Allow access?",
    consent_intro: "wants to sign you in and use:",
    allow: "Allow",
    deny: "Deny",
    choose_org: "Choose the organisation",
    no_membership: "This account is not an active member of the organisation this app belongs to.",
    forgot_title: "Reset your password",
    forgot_intro: "Enter your e-mail address. If an account exists, we send a link to set a new password.",
    forgot_sent: "If an account exists for this address, a link is on its way. It is valid for one hour.",
    send_link: "Send link",
    new_password: "New password (at least 12 characters)",
    repeat_password: "Repeat the password",
    passwords_differ: "The two passwords differ.",
    password_short: "The password needs at least 12 characters.",
    password_set: "Your password is set. You can sign in now.",
    set_password: "Set password",
    link_invalid: "This link is invalid, already used or expired.",
    invite_title: "Welcome to Carebridge",
    error_title: "Sign-in is not possible",
    csrf: "The form expired or was sent from another page. Go back and try again.",
    signed_out: "You are signed out.",
    device_title: "Connect a device",
    device_intro: "Enter the code your device shows.",
    device_code: "Device code",
    device_unknown: "This code is unknown or expired.",
    device_done: "Done. You can return to your device.",
    device_denied: "The device was not connected.",
    scope_openid: "Your identity (who you are)",
    scope_profile: "Your name and language",
    scope_email: "Your e-mail address",
    scope_phone: "Your phone number",
    scope_offline: "Stay signed in when you are not using the app",
    scope_directory: "Read the contact directory you may see",
    scope_duties: "Read your duties",
    scope_chat: "Use the duty chats",
    scope_portal: "Your appointments and messages in the customer portal",
    reset_subject: "Reset your Carebridge password",
    reset_body: "Someone asked to reset the password of your Carebridge account. Set a new password here (valid for one hour):",
    invite_subject: "Your Carebridge account",
    invite_body: "You have been invited to Carebridge. Set your password here (valid for 7 days):",
    sms_body: "Your Carebridge code is",
};

pub static DE: Texts = Texts {
    sign_in: "Anmelden",
    sign_in_with: "Anmelden mit",
    login: "E-Mail oder Handynummer",
    password: "Passwort",
    forgot: "Passwort vergessen?",
    wrong_credentials: "E-Mail/Nummer oder Passwort ist falsch.",
    locked: "Zu viele Fehlversuche. Dieses Konto ist vorübergehend gesperrt; versuchen Sie es später wieder.",
    too_many: "Zu viele Versuche aus Ihrem Netz. Warten Sie eine Minute und versuchen Sie es erneut.",
    second_factor: "Bestätigen Sie, dass Sie es sind",
    totp_code: "Code aus Ihrer Authenticator-App (oder ein Wiederherstellungscode)",
    totp_hint: "Öffnen Sie Ihre Authenticator-App und geben Sie den 6-stelligen Code für Carebridge ein.",
    sms_code: "Code aus der SMS",
    sms_sent_to: "Wir haben einen 6-stelligen Code gesendet an",
    resend: "Neuen Code senden",
    resend_wait: "Bitte warten Sie, bevor Sie einen neuen Code anfordern.",
    verify: "Bestätigen",
    wrong_code: "Dieser Code stimmt nicht.",
    code_expired: "Dieser Code ist abgelaufen oder wurde zu oft falsch eingegeben. Fordern Sie einen neuen an.",
    enrol_title: "Authenticator-App einrichten",
    enrol_intro: "Ihre Organisation verlangt einen zweiten Faktor. Scannen Sie diesen Code mit einer Authenticator-App und geben Sie den angezeigten 6-stelligen Code ein.",
    enrol_secret: "Oder geben Sie diesen Schlüssel von Hand ein:",
    recovery_title: "Ihre Wiederherstellungscodes",
    recovery_intro: "Bewahren Sie diese Codes sicher auf. Jeder meldet Sie einmal an, falls Sie Ihr Telefon verlieren. Sie werden nur jetzt angezeigt.",
    continue_: "Weiter",
    consent_title: "Zugriff erlauben?",
    consent_intro: "möchte Sie anmelden und verwenden:",
    allow: "Erlauben",
    deny: "Ablehnen",
    choose_org: "Organisation wählen",
    no_membership: "Dieses Konto ist kein aktives Mitglied der Organisation, zu der diese App gehört.",
    forgot_title: "Passwort zurücksetzen",
    forgot_intro: "Geben Sie Ihre E-Mail-Adresse ein. Falls ein Konto existiert, senden wir einen Link zum Setzen eines neuen Passworts.",
    forgot_sent: "Falls für diese Adresse ein Konto existiert, ist ein Link unterwegs. Er ist eine Stunde gültig.",
    send_link: "Link senden",
    new_password: "Neues Passwort (mindestens 12 Zeichen)",
    repeat_password: "Passwort wiederholen",
    passwords_differ: "Die beiden Passwörter sind verschieden.",
    password_short: "Das Passwort braucht mindestens 12 Zeichen.",
    password_set: "Ihr Passwort ist gesetzt. Sie können sich jetzt anmelden.",
    set_password: "Passwort setzen",
    link_invalid: "Dieser Link ist ungültig, bereits benutzt oder abgelaufen.",
    invite_title: "Willkommen bei Carebridge",
    error_title: "Anmeldung nicht möglich",
    csrf: "Das Formular ist abgelaufen oder kam von einer anderen Seite. Gehen Sie zurück und versuchen Sie es erneut.",
    signed_out: "Sie sind abgemeldet.",
    device_title: "Gerät verbinden",
    device_intro: "Geben Sie den Code ein, den Ihr Gerät anzeigt.",
    device_code: "Gerätecode",
    device_unknown: "Dieser Code ist unbekannt oder abgelaufen.",
    device_done: "Erledigt. Sie können zu Ihrem Gerät zurückkehren.",
    device_denied: "Das Gerät wurde nicht verbunden.",
    scope_openid: "Ihre Identität (wer Sie sind)",
    scope_profile: "Ihren Namen und Ihre Sprache",
    scope_email: "Ihre E-Mail-Adresse",
    scope_phone: "Ihre Telefonnummer",
    scope_offline: "Angemeldet bleiben, auch wenn Sie die App nicht benutzen",
    scope_directory: "Das Kontaktverzeichnis lesen, soweit Sie es sehen dürfen",
    scope_duties: "Ihre Einsätze lesen",
    scope_chat: "Die Einsatz-Chats benutzen",
    scope_portal: "Ihre Termine und Nachrichten im Kundenportal",
    reset_subject: "Carebridge-Passwort zurücksetzen",
    reset_body: "Jemand möchte das Passwort Ihres Carebridge-Kontos zurücksetzen. Setzen Sie hier ein neues Passwort (eine Stunde gültig):",
    invite_subject: "Ihr Carebridge-Konto",
    invite_body: "Sie wurden zu Carebridge eingeladen. Setzen Sie hier Ihr Passwort (7 Tage gültig):",
    sms_body: "Ihr Carebridge-Code lautet",
};

pub static FR: Texts = Texts {
    sign_in: "Se connecter",
    sign_in_with: "Se connecter avec",
    login: "E-mail ou numéro de mobile",
    password: "Mot de passe",
    forgot: "Mot de passe oublié ?",
    wrong_credentials: "L'e-mail/le numéro ou le mot de passe est faux.",
    locked: "Trop d'échecs. Ce compte est bloqué pour un moment ; réessayez plus tard.",
    too_many: "Trop de tentatives depuis votre réseau. Attendez une minute et réessayez.",
    second_factor: "Confirmez que c'est bien vous",
    totp_code: "Code de votre application d'authentification (ou un code de secours)",
    totp_hint: "Ouvrez votre application d'authentification et saisissez le code à 6 chiffres de Carebridge.",
    sms_code: "Code reçu par SMS",
    sms_sent_to: "Nous avons envoyé un code à 6 chiffres au",
    resend: "Envoyer un nouveau code",
    resend_wait: "Veuillez patienter avant de demander un nouveau code.",
    verify: "Confirmer",
    wrong_code: "Ce code n'est pas correct.",
    code_expired: "Ce code a expiré ou a été essayé trop souvent. Demandez-en un nouveau.",
    enrol_title: "Configurer une application d'authentification",
    enrol_intro: "Votre organisation exige un second facteur. Scannez ce code avec une application d'authentification, puis saisissez le code à 6 chiffres affiché.",
    enrol_secret: "Ou saisissez cette clé à la main :",
    recovery_title: "Vos codes de secours",
    recovery_intro: "Conservez ces codes en lieu sûr. Chacun vous connecte une fois si vous perdez votre téléphone. Ils ne sont affichés que maintenant.",
    continue_: "Continuer",
    consent_title: "Autoriser l'accès ?",
    consent_intro: "souhaite vous connecter et utiliser :",
    allow: "Autoriser",
    deny: "Refuser",
    choose_org: "Choisissez l'organisation",
    no_membership: "Ce compte n'est pas un membre actif de l'organisation de cette application.",
    forgot_title: "Réinitialiser le mot de passe",
    forgot_intro: "Saisissez votre adresse e-mail. Si un compte existe, nous envoyons un lien pour définir un nouveau mot de passe.",
    forgot_sent: "Si un compte existe pour cette adresse, un lien est en route. Il est valable une heure.",
    send_link: "Envoyer le lien",
    new_password: "Nouveau mot de passe (au moins 12 caractères)",
    repeat_password: "Répétez le mot de passe",
    passwords_differ: "Les deux mots de passe diffèrent.",
    password_short: "Le mot de passe doit comporter au moins 12 caractères.",
    password_set: "Votre mot de passe est défini. Vous pouvez vous connecter.",
    set_password: "Définir le mot de passe",
    link_invalid: "Ce lien est invalide, déjà utilisé ou expiré.",
    invite_title: "Bienvenue sur Carebridge",
    error_title: "Connexion impossible",
    csrf: "Le formulaire a expiré ou vient d'une autre page. Revenez en arrière et réessayez.",
    signed_out: "Vous êtes déconnecté.",
    device_title: "Connecter un appareil",
    device_intro: "Saisissez le code affiché par votre appareil.",
    device_code: "Code de l'appareil",
    device_unknown: "Ce code est inconnu ou expiré.",
    device_done: "C'est fait. Vous pouvez revenir à votre appareil.",
    device_denied: "L'appareil n'a pas été connecté.",
    scope_openid: "Votre identité (qui vous êtes)",
    scope_profile: "Votre nom et votre langue",
    scope_email: "Votre adresse e-mail",
    scope_phone: "Votre numéro de téléphone",
    scope_offline: "Rester connecté quand vous n'utilisez pas l'application",
    scope_directory: "Lire l'annuaire que vous pouvez voir",
    scope_duties: "Lire vos services",
    scope_chat: "Utiliser les discussions des services",
    scope_portal: "Vos rendez-vous et messages du portail client",
    reset_subject: "Réinitialiser votre mot de passe Carebridge",
    reset_body: "Quelqu'un a demandé à réinitialiser le mot de passe de votre compte Carebridge. Définissez-en un nouveau ici (valable une heure) :",
    invite_subject: "Votre compte Carebridge",
    invite_body: "Vous avez été invité sur Carebridge. Définissez votre mot de passe ici (valable 7 jours) :",
    sms_body: "Votre code Carebridge est",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_ui_locales_then_accept_language_by_quality() {
        assert_eq!(Lang::pick(Some("it fr-CH"), Some("de")), Lang::Fr);
        assert_eq!(
            Lang::pick(None, Some("it;q=1, de-CH;q=0.8, en;q=0.5")),
            Lang::De
        );
        assert_eq!(Lang::pick(None, Some("en;q=0.3, de;q=0.9")), Lang::De);
        assert_eq!(Lang::pick(None, Some("ja")), Lang::En);
        assert_eq!(Lang::pick(None, None), Lang::En);
    }
}
