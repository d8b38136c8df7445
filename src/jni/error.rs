//! How failures cross the JNI boundary.
//!
//! Every native method runs its body inside [`jni::EnvUnowned::with_env`], which catches any
//! panic, and resolves the outcome with [`ThrowKahaDb`]:
//!
//! * a core [`Error`] becomes a thrown `dev.kahadb.KahaDBException(int code, String message)`;
//! * a JNI failure becomes the same exception with code `INTERNAL`, unless a Java exception is
//!   already pending (for example an `OutOfMemoryError` from allocating the result), which is
//!   then left to propagate as it is;
//! * a panic becomes a `KahaDBException` with code `INTERNAL`.
//!
//! The native method then returns the type's default value (0, `false` or `null`), which Java
//! never sees because an exception is pending.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use jni::errors::ErrorPolicy;
use jni::objects::{JString, JThrowable, JValue};
use jni::{jni_sig, jni_str, Env};

use crate::error::{Error, ErrorCode};

/// A failure inside a native method: either from the core or from a JNI call.
#[derive(Debug)]
pub(crate) enum JniError {
    Core(Error),
    Jni(jni::errors::Error),
}

impl From<Error> for JniError {
    fn from(e: Error) -> Self {
        JniError::Core(e)
    }
}

impl From<jni::errors::Error> for JniError {
    fn from(e: jni::errors::Error) -> Self {
        JniError::Jni(e)
    }
}

impl fmt::Display for JniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JniError::Core(e) => write!(f, "{e}"),
            JniError::Jni(e) => write!(f, "JNI call failed: {e}"),
        }
    }
}

impl std::error::Error for JniError {}

/// Shorthand for the result type of a native method body.
pub(crate) type JniResult<T> = std::result::Result<T, JniError>;

/// Builds a core error, for checks made in the bridge itself.
pub(crate) fn err(code: ErrorCode, message: impl Into<String>) -> JniError {
    JniError::Core(Error::new(code, message))
}

/// The error policy of every native method: see the module documentation.
pub(crate) struct ThrowKahaDb;

impl<T: Default> ErrorPolicy<T, JniError> for ThrowKahaDb {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut Self::Captures<'unowned_env_local, 'native_method>,
        err: JniError,
    ) -> jni::errors::Result<T> {
        if env.exception_check() {
            // A Java exception is already on its way (the JNI call that failed raised it);
            // it says more than anything built here would.
            return Ok(T::default());
        }
        let (code, message) = match &err {
            JniError::Core(e) => (e.code(), e.message().to_owned()),
            JniError::Jni(e) => (ErrorCode::Internal, format!("JNI call failed: {e}")),
        };
        throw_kahadb_exception(env, code, &message);
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut Self::Captures<'unowned_env_local, 'native_method>,
        payload: Box<dyn Any + Send + 'static>,
    ) -> jni::errors::Result<T> {
        let message = format!("panic in native code: {}", panic_message(payload));
        if env.exception_check() {
            // Do not hide the panic behind whatever was pending: replace it.
            env.exception_clear();
        }
        throw_kahadb_exception(env, ErrorCode::Internal, &message);
        Ok(T::default())
    }
}

/// Throws `new KahaDBException(code, message)`; if even that fails (the class cannot be found
/// or constructed), throws a `RuntimeException` with the same text so that Java never sees a
/// bare default value.
fn throw_kahadb_exception(env: &mut Env<'_>, code: ErrorCode, message: &str) {
    let built = build_exception(env, code, message);
    match built {
        Ok(throwable) => {
            // `throw` reports `Err(JavaException)` once the exception is pending: that is the
            // expected outcome here.
            let _ = env.throw(throwable);
        }
        Err(_) => {
            if env.exception_check() {
                env.exception_clear();
            }
            let _ = env.throw(format!("{message} ({})", code.name()));
        }
    }
}

fn build_exception<'local>(
    env: &mut Env<'local>,
    code: ErrorCode,
    message: &str,
) -> jni::errors::Result<JThrowable<'local>> {
    let class = env.find_class(jni_str!("dev/kahadb/KahaDBException"))?;
    let jmessage = JString::from_str(env, message)?;
    let obj = env.new_object(
        &class,
        jni_sig!("(ILjava/lang/String;)V"),
        &[JValue::Int(code.as_i32()), JValue::Object(&jmessage)],
    )?;
    env.cast_local::<JThrowable>(obj)
}

/// The text of a panic payload, without risking a second panic while dropping it.
fn panic_message(payload: Box<dyn Any + Send + 'static>) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    if let Err(drop_panic) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // Dropping the payload panicked again; leak that second payload rather than unwind.
        std::mem::forget(drop_panic);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_extracted() {
        assert_eq!(panic_message(Box::new("boom")), "boom");
        assert_eq!(panic_message(Box::new(String::from("bang"))), "bang");
        assert_eq!(panic_message(Box::new(42u8)), "non-string panic payload");
    }

    #[test]
    fn errors_display_their_origin() {
        let e = err(ErrorCode::Config, "maxFileLength must be positive");
        assert_eq!(e.to_string(), "maxFileLength must be positive (CONFIG)");
        let j = JniError::from(jni::errors::Error::JavaException);
        assert!(j.to_string().starts_with("JNI call failed"));
    }
}
