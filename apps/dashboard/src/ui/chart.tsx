/**
 * Time series with uPlot (fast canvas charts, ~50 KB): lines, threshold lines and event markers
 * (alerts), with a caption and a text summary for those who do not see the canvas.
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface Series {
  readonly label: string;
  readonly values: readonly (number | null)[];
  readonly color: string;
  readonly dash?: number[];
  readonly points?: boolean;
}

export interface ChartProps {
  readonly title: string;
  /** Times in seconds since the epoch, ascending. */
  readonly x: readonly number[];
  readonly series: readonly Series[];
  readonly thresholds?: readonly { readonly value: number; readonly label: string }[];
  /** Vertical markers (alerts opened, resolved), at times in seconds. */
  readonly markers?: readonly { readonly x: number; readonly label: string; readonly color: string }[];
  readonly yLabel?: string;
  readonly log?: boolean;
  readonly height?: number;
  /** What a reader should take away, in words (the chart's accessible description). */
  readonly summary: string;
}

export function Chart(props: ChartProps) {
  const target = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const latest = useRef(props);
  latest.current = props;
  const shape = `${props.series.map((s) => s.label).join('|')}:${props.log ? 'log' : 'lin'}`;

  useEffect(() => {
    const el = target.current;
    if (!el) return;
    const width = Math.max(280, el.clientWidth);
    const options: uPlot.Options = {
      width,
      height: props.height ?? 200,
      legend: { show: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true }, y: props.log ? { distr: 3 } : { auto: true } },
      axes: [
        {},
        {
          label: props.yLabel ?? '',
          size: 64,
          // Small p-values read as 1e-5, not 0.
          values: (_u: uPlot, splits: (number | null)[]) =>
            splits.map((v) => (v === null ? '' : v !== 0 && Math.abs(v) < 0.001 ? v.toExponential(0) : String(+v.toPrecision(3)))),
        },
      ],
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          ...(s.dash ? { dash: s.dash } : {}),
          points: { show: s.points ?? false, size: 6 },
          spanGaps: false,
        })),
      ],
      hooks: {
        draw: [
          (u: uPlot) => {
            const { ctx } = u;
            const { left, top, width: w, height: h } = u.bbox;
            ctx.save();
            for (const t of latest.current.thresholds ?? []) {
              const y = u.valToPos(t.value, 'y', true);
              if (!Number.isFinite(y) || y < top || y > top + h) continue;
              ctx.strokeStyle = '#b3261e';
              ctx.setLineDash([6, 4]);
              ctx.lineWidth = 1.5;
              ctx.beginPath();
              ctx.moveTo(left, y);
              ctx.lineTo(left + w, y);
              ctx.stroke();
              ctx.fillStyle = '#b3261e';
              ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
              ctx.textAlign = 'right';
              ctx.fillText(t.label, left + w - 4, y - 4);
              ctx.textAlign = 'left';
            }
            ctx.setLineDash([]);
            for (const m of latest.current.markers ?? []) {
              const x = u.valToPos(m.x, 'x', true);
              if (!Number.isFinite(x) || x < left || x > left + w) continue;
              ctx.strokeStyle = m.color;
              ctx.lineWidth = 2;
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + h);
              ctx.stroke();
              ctx.fillStyle = m.color;
              ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
              ctx.fillText(m.label, x + 3, top + 12 * devicePixelRatio);
            }
            ctx.restore();
          },
        ],
      },
    };
    plot.current = new uPlot(options, data(latest.current), el);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(280, el.clientWidth), height: props.height ?? 200 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = undefined;
    };
  }, [shape, props.height]);

  useEffect(() => {
    plot.current?.setData(data(props));
  });

  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={target} role="img" aria-label={`${props.title}. ${props.summary}`} />
    </figure>
  );
}

function data(props: ChartProps): uPlot.AlignedData {
  return [Float64Array.from(props.x), ...props.series.map((s) => s.values.map((v) => (v === null ? null : v)) as (number | null)[])];
}
