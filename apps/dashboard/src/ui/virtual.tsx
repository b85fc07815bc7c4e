/**
 * A table that renders only the rows in view (plus a few), whatever the number of rows: 10,000
 * devices are a tall scroll area and about thirty <tr>. Calls `onNearEnd` when the reader gets
 * close to the last loaded row, so a paged list loads its next page as it is scrolled.
 */
import type { ComponentChildren, VNode } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

export function VirtualTable<T>(props: {
  label: string;
  rows: readonly T[];
  columns: number;
  head: ComponentChildren;
  row: (item: T, index: number) => VNode;
  rowHeight?: number;
  height?: number;
  onNearEnd?: () => void;
  /** Total rows, when known (read aloud as aria-rowcount). */
  total?: number;
}) {
  const rowHeight = props.rowHeight ?? 36;
  const height = props.height ?? 480;
  const scroller = useRef<HTMLElement>(null);
  const [scrolled, setTop] = useState(0);
  // Fewer rows than before (a filter): the browser clamps the scroll position without a scroll event.
  const top = Math.min(scrolled, Math.max(0, props.rows.length * rowHeight - height));
  const overscan = 6;
  const start = Math.max(0, Math.floor(top / rowHeight) - overscan);
  const count = Math.ceil(height / rowHeight) + overscan * 2;
  const end = Math.min(props.rows.length, start + count);
  const nearEnd = props.onNearEnd;

  useEffect(() => {
    if (nearEnd && end >= props.rows.length - overscan) nearEnd();
  }, [end, props.rows.length, nearEnd]);

  return (
    <section
      class="virtual"
      ref={scroller}
      style={{ maxHeight: `${height}px` }}
      onScroll={(event) => setTop((event.currentTarget as HTMLElement).scrollTop)}
      // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must take focus to scroll by keyboard
      tabIndex={0}
      aria-label={props.label}
    >
      <table aria-rowcount={props.total ?? props.rows.length}>
        <thead>{props.head}</thead>
        <tbody>
          {start > 0 ? (
            // biome-ignore lint/a11y/noInteractiveElementToNoninteractiveRole: an empty spacer row, not a row of data
            <tr role="presentation" class="spacer" style={{ height: `${start * rowHeight}px` }}>
              <td colSpan={props.columns} />
            </tr>
          ) : null}
          {props.rows.slice(start, end).map((item, i) => props.row(item, start + i))}
          {end < props.rows.length ? (
            // biome-ignore lint/a11y/noInteractiveElementToNoninteractiveRole: an empty spacer row, not a row of data
            <tr role="presentation" class="spacer" style={{ height: `${(props.rows.length - end) * rowHeight}px` }}>
              <td colSpan={props.columns} />
            </tr>
          ) : null}
        </tbody>
      </table>
    </section>
  );
}
