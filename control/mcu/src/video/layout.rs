//! Where each input is drawn: the cells of the grid and speaker layouts, computed from
//! the picture size and the number of inputs. Pure arithmetic; every edge is even so
//! chroma planes line up.

use super::Layout;
use super::frame::Rect;

/// The cells of `count` inputs in a `width` x `height` picture, in input order.
/// `speaker`: the index of the input shown large in the speaker layout (the first
/// when None or out of range).
pub fn cells(
    layout: Layout,
    width: u16,
    height: u16,
    count: usize,
    speaker: Option<usize>,
) -> Vec<Rect> {
    match (layout, count) {
        (_, 0) => Vec::new(),
        (Layout::Grid, _) | (Layout::Speaker, 1) => grid(width, height, count),
        (Layout::Speaker, _) => speaker_cells(
            width,
            height,
            count,
            speaker.filter(|&s| s < count).unwrap_or(0),
        ),
    }
}

/// `count` cells in ceil(sqrt(count)) columns, rows as needed, row-major.
fn grid(width: u16, height: u16, count: usize) -> Vec<Rect> {
    let mut cols = 1;
    while cols * cols < count {
        cols += 1;
    }
    let rows = count.div_ceil(cols);
    let cell_w = even(usize::from(width) / cols);
    let cell_h = even(usize::from(height) / rows);
    (0..count)
        .map(|i| Rect {
            x: to_u16((i % cols) * cell_w),
            y: to_u16((i / cols) * cell_h),
            width: to_u16(cell_w),
            height: to_u16(cell_h),
        })
        .collect()
}

/// The speaker over the top three quarters, the others in equal cells in a strip below,
/// in input order.
fn speaker_cells(width: u16, height: u16, count: usize, speaker: usize) -> Vec<Rect> {
    let big_h = even(usize::from(height) * 3 / 4);
    let strip_h = even(usize::from(height) - big_h);
    let others = count - 1;
    let small_w = even(usize::from(width) / others);
    let mut cells = Vec::with_capacity(count);
    let mut slot = 0;
    for i in 0..count {
        if i == speaker {
            cells.push(Rect {
                x: 0,
                y: 0,
                width: to_u16(even(usize::from(width))),
                height: to_u16(big_h),
            });
        } else {
            cells.push(Rect {
                x: to_u16(slot * small_w),
                y: to_u16(big_h),
                width: to_u16(small_w),
                height: to_u16(strip_h),
            });
            slot += 1;
        }
    }
    cells
}

fn even(v: usize) -> usize {
    v & !1
}

/// Cell coordinates never exceed the picture's own u16 size.
fn to_u16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(cells: &[Rect]) -> Vec<(u16, u16, u16, u16)> {
        cells
            .iter()
            .map(|r| (r.x, r.y, r.width, r.height))
            .collect()
    }

    #[test]
    fn grid_is_row_major_in_square_columns() {
        assert_eq!(
            sizes(&cells(Layout::Grid, 640, 360, 1, None)),
            [(0, 0, 640, 360)]
        );
        assert_eq!(
            sizes(&cells(Layout::Grid, 640, 360, 3, None)),
            [(0, 0, 320, 180), (320, 0, 320, 180), (0, 180, 320, 180)]
        );
        let five = cells(Layout::Grid, 640, 360, 5, None);
        assert_eq!(five.len(), 5);
        assert_eq!(
            sizes(&five[3..]),
            [(0, 180, 212, 180), (212, 180, 212, 180)]
        );
        assert!(cells(Layout::Grid, 640, 360, 0, None).is_empty());
    }

    #[test]
    fn speaker_takes_the_top_three_quarters() {
        let c = cells(Layout::Speaker, 640, 360, 4, Some(2));
        assert_eq!(
            sizes(&c),
            [
                (0, 270, 212, 90),
                (212, 270, 212, 90),
                (0, 0, 640, 270),
                (424, 270, 212, 90)
            ]
        );
        // No speaker (or an unknown one): the first input.
        assert_eq!(
            cells(Layout::Speaker, 640, 360, 2, Some(9))[0],
            Rect {
                x: 0,
                y: 0,
                width: 640,
                height: 270
            }
        );
    }
}
