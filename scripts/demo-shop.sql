-- A small, entirely fictional shop: customers, products, orders. Every name, address, card and
-- number here is made up.
CREATE TABLE customers (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    phone       text,
    ssn         text,
    card_number text,
    notes       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id          serial PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    price_cents integer NOT NULL
);
CREATE TABLE orders (
    id          serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers(id),
    product_id  integer NOT NULL REFERENCES products(id),
    quantity    integer NOT NULL,
    status      text NOT NULL DEFAULT 'placed',
    placed_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO customers (name, email, phone, ssn, card_number, notes) VALUES
  ('Ada Lovelace',    'ada@example.com',     '+1 415 555 0101', '123-45-6789', '4111 1111 1111 1111', 'prefers email'),
  ('Alan Turing',     'alan@example.org',    '+44 20 7946 0018', '219-09-9999', '5500-0000-0000-0004', NULL),
  ('Grace Hopper',    'grace@example.net',   '+1 212 555 0199', '078-05-1120', '3400 000000 00009', 'VIP since 2019'),
  ('Edsger Dijkstra', 'edsger@example.com',  '+31 20 555 0123', NULL, NULL, 'call before delivery'),
  ('Barbara Liskov',  'barbara@example.com', '+1 617 555 0142', '536-22-1234', '6011 0000 0000 0004', NULL);

INSERT INTO products (sku, name, price_cents)
SELECT 'SKU-' || lpad(g::text, 4, '0'), 'Product ' || g, 100 + (g * 37) % 9000
FROM generate_series(1, 50) AS g;

INSERT INTO orders (customer_id, product_id, quantity, status)
SELECT 1 + g % 5, 1 + g % 50, 1 + g % 3, (ARRAY['placed', 'shipped', 'delivered'])[1 + g % 3]
FROM generate_series(1, 200) AS g;
