//! Reading a list's records one at a time with a look at the next: the merge joins over
//! [`super::SortedList`]s (a build's members, a restore's tips, a build's reads ahead) walk
//! several lists in step. A read error at the head is taken out and returned, never left to
//! look like the end of the list.

use std::io;
use std::iter::Peekable;

use super::damaged;

/// The next record of `items` without taking it; a read error is taken and returned.
pub fn head<T, I>(items: &mut Peekable<I>) -> io::Result<Option<&T>>
where
    I: Iterator<Item = io::Result<T>>,
{
    if matches!(items.peek(), Some(Err(_)))
        && let Some(Err(e)) = items.next()
    {
        return Err(e);
    }
    Ok(items.peek().and_then(|r| r.as_ref().ok()))
}

/// Takes the next record (after [`head`] said there is one).
pub fn take<T, I>(items: &mut Peekable<I>) -> io::Result<T>
where
    I: Iterator<Item = io::Result<T>>,
{
    items
        .next()
        .unwrap_or_else(|| Err(damaged("a list ended early")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_at_the_head_is_returned_not_passed_over() {
        let mut it = vec![Ok(1), Err(damaged("x")), Ok(3)].into_iter().peekable();
        assert_eq!(head(&mut it).unwrap(), Some(&1));
        assert_eq!(take(&mut it).unwrap(), 1);
        assert!(head(&mut it).is_err());
        assert_eq!(head(&mut it).unwrap(), Some(&3));
        assert_eq!(take(&mut it).unwrap(), 3);
        assert_eq!(head(&mut it).unwrap(), None);
        assert!(take(&mut it).is_err(), "a take past the end is an error");
    }
}
