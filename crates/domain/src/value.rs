//! The shape every validated text value shares (an email, a room name, a message's content...):
//! a private `String` that only the type's own `parse` (or storage, which was fed by `parse`) can
//! fill. The rules stay with each type; this macro writes the rest once.

/// Declares a text value type. The plain form can be read and printed (`as_str`, `into_string`,
/// `AsRef<str>`, `Display`) and rebuilt from storage (`from_trusted`); the `secret` form prints as `Name(***)`
/// in `Debug` and has no way to read it but the accessors its module writes on purpose.
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Rebuilds a value read back from storage, where it was validated on the way in.
            pub fn from_trusted(value: String) -> Self {
                Self(value)
            }

            /// The value as text, without a copy.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
    (secret $(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(***)"))
            }
        }
    };
}

pub(crate) use text_value;
